"""How much a receiver decodes, comparable across payload sizes.

- ``capacity_bits``: the mutual information between secret and decoded secret, in bits per
  response, with a seeded percentile bootstrap 95% interval. The plug-in estimate is biased
  upward when there are many candidates and few responses (for 8 bits, 256 x 256 cells on
  128 answers), so the headline ``bits`` carries the Miller-Madow correction (Miller 1955:
  subtract ``(cells - rows - columns + 1) / (2 n ln 2)`` over the occupied cells), and
  ``plugin_bits`` keeps the raw value.
- ``variational_bits``: ``k + mean log2 q(secret | response)``, the Barber & Agakov (2003) lower
  bound on the mutual information between secret and *response* that the receiver's own
  probabilities certify (it rewards calibrated confidence, and goes negative for a receiver
  that is confidently wrong).
- ``per_bit_accuracy``: for bit-string secrets, how often each position was decoded right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _mi_bits(truth: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(plug-in, Miller-Madow corrected) mutual information in bits; the corrected value is
    kept within [0, log2 of the fewer classes seen on either side]."""
    from sklearn.metrics import mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    n = len(truth)
    plugin = mutual_info_score(truth, decoded) / math.log(2)
    table = contingency_matrix(truth, decoded, sparse=True)
    cells = table.nnz
    rows, columns = table.shape
    correction = (cells - rows - columns + 1) / (2 * n * math.log(2))
    ceiling = math.log2(min(rows, columns))  # no more than either side's entropy can hold
    return float(plugin), float(min(max(0.0, plugin - correction), ceiling))


def capacity_bits(truth: Sequence, decoded: Sequence, *, n_boot: int = 1000,
                  seed: int = 0) -> dict:
    """Bits per response decoded (Miller-Madow corrected mutual information between secret
    and decoded secret) with a percentile bootstrap 95% interval over responses."""
    truth, decoded = np.asarray(truth), np.asarray(decoded)
    plugin, bits = _mi_bits(truth, decoded)
    rng = np.random.default_rng(seed)
    boots = [_mi_bits(truth[i], decoded[i])[1]
             for i in (rng.integers(0, len(truth), len(truth)) for _ in range(n_boot))]
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (bits, bits)
    return {"bits": bits, "ci_low": float(low), "ci_high": float(high),
            "plugin_bits": plugin, "n": len(truth)}


def variational_bits(log_posteriors: np.ndarray, truth: np.ndarray, *, n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """``log2(candidates) + mean log2 q(truth)``, with a bootstrap 95% interval."""
    per_row = (math.log2(log_posteriors.shape[1])
               + log_posteriors[np.arange(len(truth)), truth] / math.log(2))
    rng = np.random.default_rng(seed)
    boots = [per_row[rng.integers(0, len(per_row), len(per_row))].mean() for _ in range(n_boot)]
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (per_row.mean(),) * 2
    return {"bits": float(per_row.mean()), "ci_low": float(low), "ci_high": float(high)}


def per_bit_accuracy(secrets: Sequence[str], decoded: Sequence[str]) -> list[float] | None:
    """Share of responses with bit i decoded right, i = 0..k-1; None unless bit strings."""
    if not secrets or not all(set(s) <= {"0", "1"} for s in secrets):
        return None
    k = len(secrets[0])
    return [float(np.mean([s[i] == d[i] for s, d in zip(secrets, decoded, strict=True)]))
            for i in range(k)]
