"""Supervised steganalysis on the token statistics: ``stats-lr``.

The unsupervised distribution tests fix in advance which way a statistic must move to look
suspicious (a squared distance, or a one-sided tail count). A code written elsewhere may move
any of them either way, by any amount, and several at once by a little: text made more likely
than honest samples (reweighting towards the head) as well as less, a deficit at one depth of
the rank ladder and not at another. ``stats-lr`` lets labelled data say so: every per-text
statistic of :func:`detectors.distribution.features` (log-likelihood, log-rank,
Fast-DetectGPT's discrepancy, GLTR's buckets, the tail ladder, the PIT and its dispersion, and
the PIT and discrepancy at word starts, sentence starts, punctuation and line breaks),
standardised on the training set, in an L2-regularised logistic regression. Its weights say which way, and how
much, each statistic pointed on the training codes (``weights()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentcode.lm import LM
from latentcode.transcripts import Transcript

from .base import Detector, check_transcripts, labels_of, register
from .distribution import EVERY_FEATURE, features
from .token_stats import token_stats

FEATURES = EVERY_FEATURE


class StatsClassifier(Detector):
    name = "stats-lr"
    needs_lm = True
    needs_labels = True

    def __init__(self, lm: LM | None = None, C: float = 1.0, max_tokens: int = 512,
                 batch_size: int = 8, seed: int = 0):
        self.lm, self.C, self.max_tokens, self.batch_size, self.seed = (
            lm, C, max_tokens, batch_size, seed)

    def features(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        stats = token_stats(self.lm, transcripts, max_tokens=self.max_tokens,
                            batch_size=self.batch_size)
        return np.array([[row[n] for n in FEATURES] for row in map(features, stats)])

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        from sklearn.linear_model import LogisticRegression

        transcripts = check_transcripts(transcripts)
        y = labels_of(transcripts, labels)
        x = self.features(transcripts)
        self.feature_names_ = list(FEATURES)
        self.mean_ = x.mean(0)
        self.scale_ = np.where(x.std(0) > 0, x.std(0), 1.0)
        model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        model.fit((x - self.mean_) / self.scale_, y)
        self.coef_ = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept_ = float(model.intercept_[0])
        return self

    def weights(self) -> dict[str, float]:
        """Each statistic's weight on the standardised scale: its learned direction."""
        self.check_fitted()
        return dict(zip(self.feature_names_, map(float, self.coef_)))

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        x = self.features(check_transcripts(transcripts))
        if x.shape[1] != len(self.coef_):
            raise ValueError(f"stats-lr was fitted on {len(self.coef_)} statistics, this version "
                             f"computes {x.shape[1]}: fit it again")
        return (x - self.mean_) / self.scale_ @ self.coef_ + self.intercept_


@register("stats-lr", needs_lm=True)
def stats_lr(lm=None, C: float = 1.0, max_tokens: int = 512, batch_size: int = 8, seed: int = 0):
    """Every per-text token statistic, standardised, in a logistic regression fitted on
    labelled transcripts: the direction of each comes from data."""
    return StatsClassifier(lm, C, max_tokens, batch_size, seed)
