"""Supervised steganalysis: a classifier trained on labelled stego and clean text.

``tfidf``: TF-IDF over character n-grams within words plus logistic regression, the classic
text-steganalysis baseline (fast, no model needed). The learned state is the vocabulary (JSON),
the IDF weights and the linear weights (arrays): saved without pickles and rebuilt exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, labels_of, register


class TfidfClassifier(Detector):
    name = "tfidf"
    needs_labels = True

    def __init__(self, analyzer: str = "char_wb", ngram_min: int = 1, ngram_max: int = 4,
                 max_features: int = 50_000, C: float = 1.0, seed: int = 0):
        if analyzer not in ("char_wb", "char", "word"):
            raise DetectorError(f"analyzer must be char_wb, char or word, got {analyzer!r}")
        if not 1 <= ngram_min <= ngram_max:
            raise DetectorError(f"need 1 <= ngram_min <= ngram_max, got {ngram_min}, {ngram_max}")
        self.analyzer, self.ngram_min, self.ngram_max = analyzer, ngram_min, ngram_max
        self.max_features, self.C, self.seed = max_features, C, seed

    def _vectorizer(self, vocabulary: list[str] | None = None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(analyzer=self.analyzer, ngram_range=(self.ngram_min, self.ngram_max),
                              max_features=self.max_features, sublinear_tf=True, lowercase=False,
                              vocabulary={t: i for i, t in enumerate(vocabulary)} if vocabulary else None)
        if vocabulary:
            vec.idf_ = self.idf_
        return vec

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        from sklearn.linear_model import LogisticRegression

        transcripts = check_transcripts(transcripts)
        y = labels_of(transcripts, labels)
        vec = self._vectorizer()
        x = vec.fit_transform([t.text for t in transcripts])
        model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed).fit(x, y)
        vocab = vec.get_feature_names_out()
        self.vocabulary_ = [str(t) for t in vocab]
        self.idf_ = np.asarray(vec.idf_, dtype=np.float64)
        self.coef_ = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept_ = float(model.intercept_[0])
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        x = self._vectorizer(self.vocabulary_).transform([t.text for t in check_transcripts(transcripts)])
        return np.asarray(x @ self.coef_ + self.intercept_, dtype=np.float64).ravel()


@register("tfidf")
def tfidf(analyzer: str = "char_wb", ngram_min: int = 1, ngram_max: int = 4,
          max_features: int = 50_000, C: float = 1.0, seed: int = 0):
    """TF-IDF character n-grams and logistic regression, trained on labelled transcripts."""
    return TfidfClassifier(analyzer, ngram_min, ngram_max, max_features, C, seed)
