"""Step distributions both sides of a codec compute, and the integer views interval codecs
take of them.

Sender and receiver see the same rows in differently shaped batches, so everything here is
per-row numpy arithmetic on float64 logits rounded to a grid (:func:`step_probs`): the two
sides start from identical numbers and make identical choices.
"""

from __future__ import annotations

import numpy as np
import torch

# Logits are rounded to this grid before anything else (see step_probs): a change of 1e-16
# relative to a logit of order 10 flips a rounding about once in 10**11 tokens that matter.
LOGIT_GRID = 2.0 ** -16


def step_probs(logits: np.ndarray, temperature: float, top_p: float, allowed: np.ndarray) -> np.ndarray:
    """Next-token distribution (float64, numpy) after temperature, top-p and masking.

    Computed per row with numpy so that sender and receiver, which see the rows in differently
    shaped batches, run the very same arithmetic. The logits are first rounded to a grid of
    ``LOGIT_GRID``: the sender's and the receiver's float64 logits differ in their last bits
    (other batch shapes, other chunking), and interval codecs need the same distribution to the
    last bit on both sides. Without the grid such a difference flips a 2**-32 rounding of the
    CDF about once in 2,000 tokens; with it both sides almost always start from identical
    numbers. Rounding moves each probability by a factor of at most exp(2**-17): a KL to the
    model below 1e-10 nats per token.
    """
    grid = np.round(logits.astype(np.float64) / LOGIT_GRID) * LOGIT_GRID
    z = np.where(allowed, grid / temperature, -np.inf)
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = most_likely_first(p, np.arange(len(p)))
        before = np.cumsum(p[order]) - p[order]
        p[order[before >= top_p]] = 0.0
        p /= p.sum()
    return p


def most_likely_first(p: np.ndarray, tokens: np.ndarray, k: int = 0) -> np.ndarray:
    """``tokens`` ordered by falling ``p``, ties in their given order, at most ``k`` (0 = all).

    Exactly ``tokens[np.argsort(-p[tokens], kind="stable")][:k]``, which every codec's layout
    depends on, but cheaper on a 50k vocabulary: probabilities are non-negative, so their
    float64 bit patterns sort like the numbers (an integer sort is faster), and for a top k
    only the tokens at or above the k-th largest probability are sorted at all.
    """
    values = p[tokens]
    if values.size and values.min() < 0:
        raise ValueError("most_likely_first needs probabilities >= 0")
    if 0 < k < len(tokens):
        kth = np.partition(values, len(values) - k)[len(values) - k]
        above = values > kth
        ties = tokens[values == kth][: k - int(above.sum())]
        head = most_likely_first(p, tokens[above])
        return np.concatenate([head, ties])
    keys = -(values + 0.0).view(np.int64)  # + 0.0 turns a -0.0 into 0.0
    # torch's stable sort of int64 is a few times faster than numpy's on a 50k vocabulary
    return tokens[torch.sort(torch.from_numpy(keys), stable=True).indices.numpy()]


def quantize(p: np.ndarray, freq_bits: int, *, by_probability: bool = True,
             top_k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and integer frequencies summing to ``2**freq_bits`` (the interval codecs' view of
    ``p``): most likely first unless ``by_probability`` is False (token-id order), at most
    ``top_k`` tokens (0 = all), tokens that round to zero dropped, the rounding remainder given
    to the largest frequency."""
    tokens = np.flatnonzero(p > 0)
    if by_probability:
        tokens = most_likely_first(p, tokens, top_k)
    elif top_k:
        tokens = tokens[:top_k]
    total = 1 << freq_bits
    freqs = np.floor(p[tokens] / p[tokens].sum() * total).astype(np.int64)
    keep = freqs > 0
    tokens, freqs = tokens[keep], freqs[keep]
    freqs[int(np.argmax(freqs))] += total - int(freqs.sum())
    return tokens, freqs


def quantized_kl(p: np.ndarray, tokens: np.ndarray, freqs: np.ndarray) -> float:
    """KL(quantized distribution || p), nats."""
    q = freqs / float(freqs.sum())
    return float(np.sum(q * (np.log(q) - np.log(p[tokens]))))


def entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())
