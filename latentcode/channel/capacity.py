"""How much a receiver decodes, comparable across payload sizes.

- ``capacity_bits``: the mutual information between secret and decoded secret, in bits per
  response, with a seeded percentile bootstrap 95% interval. The plug-in estimate is biased
  upward when there are many candidates and few responses, so it carries the Miller-Madow
  correction (Miller 1955: subtract ``(cells - rows - columns + 1) / (2 n ln 2)`` over the
  occupied cells), and ``plugin_bits`` keeps the raw value. For bit strings of several bits
  even that is far too high on a few hundred answers (4 bits: 256 cells on 128), so the
  headline ``bits`` sums each bit's information instead, a lower bound for random payloads.
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


def capacity_bits(truth: Sequence, decoded: Sequence, *, candidates: Sequence[str] | None = None,
                  n_boot: int = 1000, seed: int = 0) -> dict:
    """Bits per response decoded, with a percentile bootstrap 95% interval over responses.

    For one secret of a few classes (a bit, a hiring label): the Miller-Madow corrected mutual
    information between secret and decoded secret. For bit strings of k > 1 bits
    (``candidates`` given as such): the sum over bits of each bit's mutual information with
    its decoded bit, each from a 2 x 2 table. With independent uniform bits (random payloads)
    that sum is a lower bound on the mutual information of the whole secret, and it is one a
    few hundred answers can estimate: the full 2**k x 2**k table (256 cells for 4 bits on 128
    answers) is so sparse that even the corrected estimate reads noise as information (it
    stays in ``table_bits``).
    """
    truth, decoded = np.asarray(truth), np.asarray(decoded)
    plugin, table = _mi_bits(truth, decoded)
    bit_strings = (candidates is not None and len(candidates[0]) > 1
                   and all(set(c) <= {"0", "1"} for c in candidates))
    if bit_strings:
        bits_of = np.array([[int(b) for b in c] for c in candidates])  # [candidates, k]
        t, d = bits_of[truth], bits_of[decoded]

        def estimate(rows):
            return sum(_mi_bits(t[rows, i], d[rows, i])[1] for i in range(t.shape[1]))
    else:
        def estimate(rows):
            return _mi_bits(truth[rows], decoded[rows])[1]
    everything = np.arange(len(truth))
    bits = float(estimate(everything)) if bit_strings else table
    rng = np.random.default_rng(seed)
    boots = [estimate(rng.integers(0, len(truth), len(truth))) for _ in range(n_boot)]
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (bits, bits)
    return {"bits": bits, "ci_low": float(low), "ci_high": float(high), "plugin_bits": plugin,
            "table_bits": table, "estimator": "per-bit" if bit_strings else "table",
            "n": len(truth)}


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
