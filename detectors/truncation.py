"""Truncation: was this text sampled from the model cut to its top k tokens, or top-p mass?

Most published generative steganography samples from a truncated distribution: Huffman and
block codes over the top k, arithmetic coding and Meteor after top-k or nucleus filtering,
vocabulary bins that keep the likeliest token of a bin. Such text never leaves the kept set,
and honest text does now and then, so for each rung of two ladders (the top k for k = 1, 2,
4, ..., 2**17, and the top-p nucleus for p = 0.5 ... 0.999) the likelihood ratio of "the model
cut to this rung and renormalised" against "the model" is ``prod_t 1 / (1 - q_t)`` when every
token lies inside the rung (q_t the mass the model puts outside it at position t), and 0
otherwise; the alternative is given a ``slack``, a small share of tokens that may leave the
set (an encoder's text, re-tokenized, can split a word otherwise than it was generated). The
score is the log-ratio at the best rung (:func:`detectors.distribution.truncation_evidence`),
in nats.

Unlike a count of tail tokens against its expectation (``tail``), the ratio needs no choice of
depth and no fitted distance: it is the Neyman-Pearson test for each depth, and under honest
sampling ``exp(-score)`` bounds how often one rung scores as high (multiply by the number of
rungs for the best of them). It needs no clean reference; ``fit`` only records the clean
scores' spread for the report. Its null is the model sampled at temperature 1 with no
truncation: honest text sampled colder, greedily or with top-p by the deployment itself
reads as truncated too, so compare it with clean text sampled the way the deployment samples. It is blind to codes that keep the whole distribution (the
zero-KL codecs, as it must be) and to edits that put tokens far outside (those raise it to 0,
and ``format`` reads them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentcode.lm import LM
from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, clean_reference, register
from .distribution import LADDER, TRUNCATION_SLACK, best_rung, rung_evidence, truncation_evidence
from .token_stats import token_stats


class TruncationDetector(Detector):
    name = "truncation"
    needs_lm = True

    def __init__(self, lm: LM | None = None, slack: float = TRUNCATION_SLACK,
                 max_tokens: int = 512, batch_size: int = 8):
        self.lm, self.slack, self.max_tokens, self.batch_size = lm, slack, max_tokens, batch_size

    def _stats(self, transcripts: Sequence[Transcript]):
        if not 0 <= self.slack < 1:
            raise DetectorError(f"truncation: slack must be in [0, 1), got {self.slack}")
        return token_stats(self.lm, check_transcripts(transcripts), max_tokens=self.max_tokens,
                           batch_size=self.batch_size)

    def _evidence(self, transcripts: Sequence[Transcript]) -> list[tuple[float, int]]:
        return [truncation_evidence(s, self.slack) for s in self._stats(transcripts)]

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        clean = np.array([e for e, _ in self._evidence(clean_reference(transcripts, labels))])
        self.reference_mean_ = float(clean.mean())
        self.reference_std_ = float(clean.std())
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        return np.array([e for e, _ in self._evidence(transcripts)])

    def set_test(self, transcripts: Sequence[Transcript]) -> dict[str, float | str | None]:
        """The same test for a set of texts from one source: the log-ratios of every rung summed
        over the texts (independent samples multiply), at the best rung. A cut deep in the
        vocabulary (the top 512 of 49k) moves one 64-token answer too little for any per-text
        test to be sure of it (docs/detectors.md), and a handful of answers enough. ``p_bound``
        is Ville's bound over the ladder's rungs on how often honest sets score as high."""
        stats = self._stats(transcripts)
        evidence, best = best_rung(np.sum([rung_evidence(s, self.slack) for s in stats], axis=0))
        return {"evidence": evidence, "rung": LADDER[best] if evidence > 0 else None,
                "p_bound": float(min(1.0, len(LADDER) * np.exp(-evidence))),
                "texts": len(stats)}

    def rungs(self, transcripts: Sequence[Transcript]) -> list[str | None]:
        """Each text's best rung (``tail_16``: the top 16; ``nucleus_0.9``: top-p 0.9), or
        None where the text gives no evidence of truncation at all."""
        return [LADDER[r] if e > 0 else None for e, r in self._evidence(transcripts)]


@register("truncation", needs_lm=True)
def truncation(lm=None, slack: float = TRUNCATION_SLACK, max_tokens: int = 512,
               batch_size: int = 8):
    """The likelihood ratio of sampling cut to the top k or top p, at the best rung."""
    return TruncationDetector(lm, slack, max_tokens, batch_size)
