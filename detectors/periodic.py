"""Periodic positions: a code that embeds on every m-th token only, whatever m and phase.

A scheme may spend its payload on a fixed stride of positions (every 4th token, say) and sample
the rest honestly, so that a whole-text statistic sees the shift diluted m-fold and a test
restricted to the right positions sees it undiluted. ``positions`` restricts tests to classes
read off the characters (word and sentence starts, punctuation, line breaks); a stride is not
written in the characters, so this detector scans for it: for every period m in
``1 .. max_period`` (m = 1: the whole text) and every phase r < m, Fast-DetectGPT's analytic discrepancy (Bao et al.
2024) over the tokens t = r (mod m), which is about N(0, 1) under honest sampling at
temperature 1 because the model gives each position's mean and variance of log p. The score
is the largest |z| of the scan, two-sided since a code may push its positions toward likely
tokens or away from them. With ``max_period = 1`` the scan is the whole text alone. The
largest of 36 correlated z-scores (at the default ``max_period = 8``) has no simple null, and on the few tokens of one phase
(8 of a 64-token answer at m = 8) even one z is far from normal (a rare token's log p is
heavily skewed: a Bonferroni bound over the phases failed twofold on synthetic honest text),
so calibrate the threshold on clean text, as the battery does for every detector.

It needs no clean reference (``fit`` only records the clean scores' spread for the report).
Positions are counted on the text re-tokenized by the model: an encoder whose tokens split the
text otherwise loses its phase at the first mismatch, and the scan then finds the longest
stretch only in part. Like every model-based statistic it is blind to the zero-KL codecs, as
it must be, and its null is the model sampled at temperature 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latentcode.lm import LM
from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, clean_reference, register
from .distribution import discrepancy
from .token_stats import TokenStats, token_stats


def phase_scan(stats: TokenStats, max_period: int = 8) -> tuple[float, int, int]:
    """The largest |Fast-DetectGPT z| over the tokens t = r (mod m), for m in 1..max_period
    and r < m (m = 1: the whole text), and the (m, r) that reached it."""
    if max_period < 1:
        raise DetectorError(f"periodic: max_period must be at least 1, got {max_period}")
    positions = np.arange(len(stats))
    best = (0.0, 1, 0)
    for m in range(1, max_period + 1):
        for r in range(m):
            z = abs(discrepancy(stats, positions % m == r))
            if z > best[0]:
                best = (z, m, r)
    return best


class PeriodicDetector(Detector):
    name = "periodic"
    needs_lm = True

    def __init__(self, lm: LM | None = None, max_period: int = 8, max_tokens: int = 512,
                 batch_size: int = 8):
        self.lm, self.max_period = lm, max_period
        self.max_tokens, self.batch_size = max_tokens, batch_size

    def _scan(self, transcripts: Sequence[Transcript]) -> list[tuple[float, int, int]]:
        stats = token_stats(self.lm, check_transcripts(transcripts), max_tokens=self.max_tokens,
                            batch_size=self.batch_size)
        return [phase_scan(s, self.max_period) for s in stats]

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        clean = np.array([z for z, _, _ in self._scan(clean_reference(transcripts, labels))])
        self.reference_mean_ = float(clean.mean())
        self.reference_std_ = float(clean.std())
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        return np.array([z for z, _, _ in self._scan(transcripts)])

    def strides(self, transcripts: Sequence[Transcript]) -> list[tuple[int, int]]:
        """Each text's (period, phase) of largest shift: (1, 0) is the whole text."""
        return [(m, r) for _, m, r in self._scan(transcripts)]


@register("periodic", needs_lm=True)
def periodic(lm=None, max_period: int = 8, max_tokens: int = 512, batch_size: int = 8):
    """The largest Fast-DetectGPT shift over every stride of positions (every m-th token)."""
    return PeriodicDetector(lm, max_period, max_tokens, batch_size)
