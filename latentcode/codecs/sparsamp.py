"""SparSamp (Wang et al. 2025, "Efficient Provably Secure Steganography Based on Sparse
Sampling"): zero KL, and near-full use of the entropy.

The channel bits are cut into blocks of ``block_bits``. A block is a number ``k`` among
``N = 2**block_bits`` candidates. Each step the ``N`` candidates are ``N`` evenly spaced points
shifted by a keyed uniform ``r``: candidate ``k`` sits at ``u_k = frac(k / N + r)``. The sender
samples the token whose CDF interval holds ``u_k``. For any fixed ``k`` the point is uniform
(``r`` is), so the token is distributed exactly as plain sampling: zero KL, whatever the message.
The receiver, seeing the token, keeps the candidates whose points fell in its interval: a
contiguous (cyclic) run of about ``N * p(token)`` of them, re-indexed from 0. Each step thus
removes ``-log2 p(token)`` bits of uncertainty on average, the entropy; when one candidate is
left the block is decoded and the next block starts.

Block sizes. Each block wastes a few bits on average (its last token usually has more entropy
than the block has left), so long blocks use the entropy better: about 0.90 of it with 32-bit
blocks and 0.97 with 128-bit blocks, measured on the embedded model. But a receiver learns
nothing checkable before a block ends, so the first block is exactly the frame's header
(length and its check, 24 bits): a wrong key or another codec's text fails that check after a
handful of tokens, whatever ``block_bits`` is, and the rest of the frame goes in long blocks.

All interval arithmetic is exact (integers and dyadic rationals), so sender and receiver agree
on every boundary.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .base import Codec, CodecError, Option, RowState, TokenTable, positions
from .framing import HEADER_BITS

R_BITS = 53


class SparSamp(Codec):
    name = "sparsamp"

    def __init__(self, *, block_bits: int = 128, **sampling):
        super().__init__(**sampling)
        if not 1 <= block_bits <= 256:
            raise CodecError(f"block_bits must be in [1, 256], got {block_bits}")
        self.block_bits = block_bits

    def params(self) -> dict:
        return {**super().params(), "block_bits": self.block_bits}

    def block_length(self, done: int, frame_len: int) -> int:
        """Bits in the block that starts at channel bit ``done``: the header, then long blocks,
        the last one cut at the frame's end (the receiver knows it from the header)."""
        if done < HEADER_BITS:
            return HEADER_BITS - done
        if done < frame_len:
            return min(self.block_bits, frame_len - done)
        return self.block_bits

    def in_flight_bits(self, state: RowState) -> float:
        """The unfinished block is known to be one of ``n`` candidates: log2(2**l / n) bits."""
        n = state.extra.get("n")
        return float(state.extra["length"] - math.log2(n)) if n else 0.0

    def _shift(self, state: RowState) -> Fraction:
        word = int(state.rng("sparsamp").bits(R_BITS), 2)
        return Fraction(word, 1 << R_BITS)

    @staticmethod
    def _cdf(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.flatnonzero(p > 0)
        return tokens, np.concatenate([[0.0], np.cumsum(p[tokens])])

    @staticmethod
    def _survivors(lo: Fraction, hi: Fraction, r: Fraction, n: int) -> tuple[int, int]:
        """(first index, count) of candidates k < n with frac(k/n + r) in [lo, hi)."""
        start = _ceil((lo - r) * n)
        return start % n, _ceil((hi - r) * n) - start

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        block = state.extra
        if not block:
            length = self.block_length(state.sent, state.frame_len)
            bits = state.channel.take(state.sent, length)
            block.update(k=int("".join(map(str, bits)), 2), n=1 << length, length=length)
        tokens, cum = self._cdf(p)
        total = Fraction(float(cum[-1]))  # 1 up to rounding; the scale is shared exactly
        r = self._shift(state)
        u = (Fraction(block["k"], block["n"]) + r) % 1 * total
        i = int(np.searchsorted(cum, float(u), side="right")) - 1
        i = min(max(i, 0), len(tokens) - 1)
        while i > 0 and Fraction(float(cum[i])) > u:  # exact correction of float rounding
            i -= 1
        while i < len(tokens) - 1 and Fraction(float(cum[i + 1])) <= u:
            i += 1
        start, count = self._survivors(Fraction(float(cum[i])) / total,
                                       Fraction(float(cum[i + 1])) / total, r, block["n"])
        k = (block["k"] - start) % block["n"]
        assert k < count, "sparsamp: the chosen token must hold the message point"
        if count == 1:
            state.sent += block["length"]
            block.clear()
        else:
            block.update(k=k, n=count)
        return int(tokens[i])

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        tokens, cum = self._cdf(p)
        index = positions(tokens, len(p))
        done = state.extra.get("done", 0)  # channel bits of the blocks already decoded
        length = self.block_length(done, state.frame_len)
        n = state.extra.get("n", 1 << length)
        history = state.extra.get("history", ())
        total = Fraction(float(cum[-1]))
        r = None
        options = []
        for token in table.prefixes_of(text, cursor):
            i = int(index[token])
            if i < 0:
                continue
            r = r if r is not None else self._shift(state)
            start, count = self._survivors(Fraction(float(cum[i])) / total,
                                           Fraction(float(cum[i + 1])) / total, r, n)
            if count < 1:
                continue  # no candidate point falls on this token: the sender never sent it
            if count == 1:  # block decoded: undo the re-indexing, newest step first
                k = start
                for s, m in reversed(history):
                    k = (k + s) % m
                bits = [int(b) for b in f"{k:0{length}b}"]
                options.append((token, bits, {"done": done + length}))
            else:
                options.append((token, [], {"done": done, "n": count,
                                            "history": history + ((start, n),)}))
        return sorted(options, key=lambda o: -p[o[0]])


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)
