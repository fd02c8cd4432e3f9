"""Distribution tests: is this text typical of the reference model's own samples?

Per transcript, from the token statistics (:mod:`detectors.token_stats`):

- ``loglik``: mean log p of the tokens;
- ``logrank``: mean log rank (Mitchell et al. / GLTR's rank view);
- ``fast-detectgpt``: Fast-DetectGPT's analytic sampling discrepancy (Bao et al. 2024),
  ``(sum log p(x_t) - sum E[log p]) / sqrt(sum Var[log p])``, with the model as its own
  sampling and scoring model: about N(0, 1) for the model's own samples at temperature 1;
- ``gltr``: the fractions of tokens of rank 1-10, 11-100, 101-1000 (GLTR, Gehrmann et al. 2019).
- ``tail``: for k in 1, 2, 4, ..., 2**17 (a geometric ladder past every vocabulary), how many
  tokens rank below the top k, against how many the model itself expects there (the sum over
  positions of the mass outside its top k), as a z-score; ``pit``, the mean
  probability-integral transform of the tokens (the mass of tokens strictly more likely, plus
  half the token's own), z-scored against its exact mean 1/2; and ``pit_dispersion``, the sum
  of squared PIT deviations against its exact expectation under the model (positive: tokens
  from both ends of the distribution, negative: crowded into the middle). Like Fast-DetectGPT
  these need no reference: the model says what honest sampling gives. A codec that picks only
  among the top k tokens (Huffman or block coding of the top k, most "bins" schemes), at any
  k, leaves a deficit at the rungs above k that grows with every token, whatever its rate; a
  reweighting toward likely tokens without truncation moves ``pit`` down and Fast-DetectGPT up.
  Every z-score is signed, so a shift toward the head and one toward the tail both show.
  The ``tail`` detector keeps the rungs where honest text expects at least ``min_expected``
  tokens below the top k (fitted on the clean reference): deeper ones cannot show a deficit
  in one text, and on short texts they only add noise to the distance.
- ``positions``: ``pit`` and Fast-DetectGPT's discrepancy on word starts, sentence starts,
  punctuation and line breaks alone (:data:`detectors.token_stats.CLASSES`), for codes
  confined to some positions, whose shift the whole text would dilute.

The detector fits where clean text lies (the mean and a shrunk covariance of the chosen
statistics over clean reference transcripts, Ledoit-Wolf) and scores a transcript by its
squared Mahalanobis distance from there: two-sided, because a codec may push tokens towards
likely ones (huffman over the top-k) or away from them. ``statistic="all"`` (the
``distribution`` detector) uses the first four; ``tail`` is its own detector, because on a
model that is all but sure of each indicator (a near-uniform one, say) its z-scores turn into
rare-event counts with heavy tails, and those would drown the other statistics in one distance.

Set level, :meth:`DistributionDetector.set_test` returns p-values for "this set of texts was
not sampled like the clean reference": Kolmogorov-Smirnov on per-token log ranks and
chi-square on GLTR rank buckets. Tokens of one text are not independent, so these p-values are
optimistic for long texts; use them to rank sets, and the per-transcript scores for ROC curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from latentcode.lm import LM
from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, clean_reference, register
from .token_stats import CLASSES, NUCLEUS_PS, TAIL_KS, TokenStats, token_stats

GLTR_EDGES = (10, 100, 1000)
STATISTICS = {
    "loglik": ["loglik"],
    "logrank": ["logrank"],
    "fast-detectgpt": ["fast_detectgpt"],
    "gltr": ["gltr_top10", "gltr_top100", "gltr_top1000"],
}
STATISTICS["all"] = [f for fs in STATISTICS.values() for f in fs]
STATISTICS["tail"] = ([f"tail_{k}" for k in TAIL_KS] + [f"nucleus_{p}" for p in NUCLEUS_PS]
                      + ["pit", "pit_dispersion"])
STATISTICS["positions"] = [f"{stat}@{c}" for c in CLASSES for stat in ("pit", "fast_detectgpt")]
EVERY_FEATURE = list(dict.fromkeys(f for fs in STATISTICS.values() for f in fs)) + ["truncation"]
LADDER = [f"tail_{k}" for k in TAIL_KS] + [f"nucleus_{p}" for p in NUCLEUS_PS]


def gltr_buckets(rank: np.ndarray) -> np.ndarray:
    """Token counts in rank buckets 1-10, 11-100, 101-1000 and beyond."""
    return np.bincount(np.searchsorted(GLTR_EDGES, rank, side="left"), minlength=len(GLTR_EDGES) + 1)


def _pit_z(pit: np.ndarray) -> float:
    """Mean mid-PIT against its exact mean 1/2 (variance 1/12 per token), 0 with no tokens."""
    return float((pit.sum() - len(pit) / 2) / np.sqrt(len(pit) / 12)) if len(pit) else 0.0


def discrepancy(stats: TokenStats, where: np.ndarray | slice = slice(None)) -> float:
    """Fast-DetectGPT's analytic discrepancy over the chosen positions, 0 with none."""
    logp, mean, var = stats.logp[where], stats.mean[where], stats.var[where]
    if not len(logp):
        return 0.0
    return float((logp.sum() - mean.sum()) / np.sqrt(max(var.sum(), 1e-12)))


def _outside(stats: TokenStats) -> tuple[np.ndarray, np.ndarray]:
    """For every rung of both ladders (``LADDER``: the top k, then the top-p nucleus), which
    tokens fall outside it [tokens, rungs] and the mass the model puts outside it there."""
    outside = np.concatenate([stats.rank[:, None] > np.array(TAIL_KS)[None, :],
                              stats.rank[:, None] > stats.nucleus_size], axis=1)
    return outside, np.concatenate([stats.tail_mass, stats.nucleus_mass], axis=1)


TRUNCATION_SLACK = 0.01  # the share of tokens a truncated sampler may leave its set by


def truncation_evidence(stats: TokenStats, slack: float = TRUNCATION_SLACK) -> tuple[float, int]:
    """The likelihood-ratio test of "sampled from the model cut to one rung of the ladders
    and renormalised" against "sampled from the model", at the best rung, and that rung.

    The alternative leaves its set at a rate ``slack`` (an encoder's text re-tokenized may
    split a word otherwise than it was written, and one such token must not erase the rest),
    so each token's ratio is ``slack + (1 - slack) [inside] / (1 - q_t)``, q_t the mass the
    model puts outside the rung. Its expectation under honest sampling is exactly 1, so the
    product is a martingale and ``exp(-evidence)`` bounds the chance that an honest text
    scores as high at one rung (Ville's inequality). The deepest rung, past the vocabulary,
    scores 0: the evidence is never negative.
    """
    return _evidence(*_outside(stats), slack)


def rung_evidence(stats: TokenStats, slack: float = TRUNCATION_SLACK) -> np.ndarray:
    """The log-likelihood ratio of :func:`truncation_evidence` at every rung of ``LADDER``
    (-inf where a token leaves the rung with no slack): summed over independent texts it is
    the same test for a set of them."""
    return _log_ratios(*_outside(stats), slack)


def _log_ratios(outside: np.ndarray, q: np.ndarray, slack: float) -> np.ndarray:
    ratio = slack + (1 - slack) * (~outside) / (1 - np.clip(q, 0.0, 1 - 1e-12))
    with np.errstate(divide="ignore"):  # no slack: a token outside is -inf at its rung
        return np.log(ratio).sum(axis=0)


def best_rung(log_ratios: np.ndarray) -> tuple[float, int]:
    """The evidence at the best rung of ``LADDER`` (never negative: the deepest rung, past the
    vocabulary, scores 0) and that rung, for one text's log-ratios or a set's summed ones."""
    best = int(np.argmax(log_ratios))
    return max(0.0, float(log_ratios[best])), best


def _evidence(outside: np.ndarray, q: np.ndarray, slack: float) -> tuple[float, int]:
    return best_rung(_log_ratios(outside, q, slack))


def features(stats: TokenStats) -> dict[str, float]:
    """Every per-transcript statistic of one text (``EVERY_FEATURE``)."""
    buckets = gltr_buckets(stats.rank) / len(stats)
    outside, q = _outside(stats)  # and what the model expects of each indicator
    # variance floored at one token's worth: where the model is all but sure of an indicator,
    # a single surprise must not read as a 30-sigma event
    ladder_z = (outside.sum(0) - q.sum(0)) / np.sqrt(np.maximum((q * (1 - q)).sum(0), 1.0))
    pit = stats.mass_above + np.exp(stats.logp) / 2
    # squared deviations of the PIT against what the model's own samples give, position by
    # position; floored like the tail (a deviation's variance is at most 1/64 per token)
    dev = (pit - 0.5) ** 2
    dispersion = (dev.sum() - stats.pit_m2.sum()) / np.sqrt(
        max((stats.pit_m4 - stats.pit_m2 ** 2).sum(), 1 / 16))
    by_class = {}
    for name, bit in CLASSES.items():
        where = (stats.classes & bit) > 0
        by_class[f"pit@{name}"] = _pit_z(pit[where])
        by_class[f"fast_detectgpt@{name}"] = discrepancy(stats, where)
    return {
        "loglik": float(stats.logp.mean()),
        "logrank": float(np.log(stats.rank).mean()),
        "fast_detectgpt": discrepancy(stats),
        "gltr_top10": float(buckets[0]),
        "gltr_top100": float(buckets[1]),
        "gltr_top1000": float(buckets[2]),
        **{name: float(z) for name, z in zip(LADDER, ladder_z)},
        "pit": _pit_z(pit),
        "pit_dispersion": float(dispersion),
        **by_class,
        "truncation": _evidence(outside, q, TRUNCATION_SLACK)[0],
    }


class DistributionDetector(Detector):
    name = "distribution"
    needs_lm = True

    def __init__(self, lm: LM | None = None, statistic: str = "all", max_tokens: int = 512,
                 batch_size: int = 8, min_expected: float = 1.0):
        if statistic not in STATISTICS:
            raise DetectorError(f"unknown statistic {statistic!r}; choose from {', '.join(STATISTICS)}")
        self.lm, self.statistic, self.max_tokens, self.batch_size = lm, statistic, max_tokens, batch_size
        self.min_expected = min_expected

    def token_stats(self, transcripts: Sequence[Transcript], progress: bool = False) -> list[TokenStats]:
        return token_stats(self.lm, transcripts, max_tokens=self.max_tokens,
                           batch_size=self.batch_size, progress=progress)

    def features(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        """The chosen statistics (those kept by ``fit``), one row per transcript."""
        return self._matrix(self.token_stats(transcripts))

    def _matrix(self, stats: list[TokenStats]) -> np.ndarray:
        names = getattr(self, "feature_names_", STATISTICS[self.statistic])
        return np.array([[features(s)[n] for n in names] for s in stats])

    def _rungs_that_can_show(self, stats: list[TokenStats], names: list[str]) -> list[str]:
        """The rungs of both ladders where honest text of this kind expects at least
        ``min_expected`` tokens outside: deeper ones cannot show a deficit in one text and only
        add noise to the distance (the rung that expects most is kept in any case)."""
        expected = np.mean([_outside(s)[1].sum(0) for s in stats], axis=0)
        keep = {n for n, e in zip(LADDER, expected) if e >= self.min_expected}
        keep = keep or {LADDER[int(np.argmax(expected))]}
        return [n for n in names if n not in LADDER or n in keep]

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        from sklearn.covariance import LedoitWolf

        clean = clean_reference(transcripts, labels)
        if len(clean) < 2:
            raise DetectorError(f"the clean reference needs at least 2 transcripts, got {len(clean)}")
        stats = self.token_stats(clean)
        self.feature_names_ = self._rungs_that_can_show(stats, list(STATISTICS[self.statistic]))
        x = self._matrix(stats)
        self.center_ = x.mean(axis=0)
        self.precision_ = LedoitWolf().fit(x).precision_
        ranks = np.concatenate([s.rank for s in stats])
        self.reference_log_ranks_ = np.sort(np.log(ranks))
        self.reference_buckets_ = gltr_buckets(ranks)
        self.n_reference_ = len(clean)
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        x = self.features(check_transcripts(transcripts))
        if x.shape[1] != len(self.center_):  # a folder saved by an older version
            raise DetectorError(f"{self.name} ({self.statistic}) was fitted on {len(self.center_)} "
                                f"statistics, this version computes {x.shape[1]}: fit it again")
        d = x - self.center_
        return np.einsum("ij,jk,ik->i", d, self.precision_, d)

    def set_test(self, transcripts: Sequence[Transcript]) -> dict[str, float]:
        """p-values for "this set was not sampled like the clean reference" (small = differs)."""
        self.check_fitted()
        ranks = np.concatenate([s.rank for s in self.token_stats(check_transcripts(transcripts))])
        ks = sps.ks_2samp(np.log(ranks), self.reference_log_ranks_)
        table = np.array([gltr_buckets(ranks), self.reference_buckets_])
        table = table[:, table.sum(axis=0) > 0]
        chi2 = sps.chi2_contingency(table) if table.shape[1] > 1 else None
        return {"ks_log_rank_p": float(ks.pvalue),
                "chi2_gltr_p": float(chi2.pvalue) if chi2 is not None else 1.0,
                "tokens": len(ranks)}


@register("distribution", needs_lm=True)
def distribution(lm=None, statistic: str = "all", max_tokens: int = 512, batch_size: int = 8,
                 min_expected: float = 1.0):
    """Every token statistic at once, squared Mahalanobis distance from clean text."""
    return DistributionDetector(lm, statistic, max_tokens, batch_size, min_expected)


def _single(statistic: str):
    def factory(lm=None, max_tokens: int = 512, batch_size: int = 8, min_expected: float = 1.0):
        return DistributionDetector(lm, statistic, max_tokens, batch_size, min_expected)

    factory.__doc__ = f"The {statistic} statistic(s) alone, squared Mahalanobis distance from clean text."
    return factory


for _name in ("loglik", "logrank", "fast-detectgpt", "gltr", "tail", "positions"):
    register(_name, needs_lm=True)(_single(_name))
