"""SparSamp (Wang et al. 2025, "Efficient Provably Secure Steganography Based on Sparse
Sampling"): the model's distribution, and near-full use of the entropy.

The channel bits are cut into blocks of ``block_bits``. A block is a number ``k`` among
``N = 2**block_bits`` candidates. Each step the ``N`` candidates are ``N`` evenly spaced points
shifted by a keyed uniform ``r``: candidate ``k`` sits at ``u_k = frac(k / N + r)``. The sender
samples the token whose CDF interval holds ``u_k``. For any fixed ``k`` the point is uniform
(``r`` is), so the token is distributed as plain sampling, whatever the message.
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

Exactness. With long blocks the candidate points are far closer together (2**-128) than
floating point can resolve, so both sides round the distribution to integer frequencies at
2**-32 and do all interval arithmetic after that in exact integers; the logits themselves are
computed so that sender and receiver agree (see :mod:`.numerics`). The tokens follow the
quantized distribution exactly: ``r`` is uniform on a 2**-53 grid, finer than the CDF's and
aligned with it, so a token of frequency ``f`` is sent with probability ``f / 2**32`` for any
message. Its KL to the model (tokens below 2**-32 dropped, rounding) is recorded per
transcript; about 1e-6 nats per token on the embedded model at top-p 1.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Codec
from .distributions import quantize, quantized_kl
from .framing import HEADER_BITS
from .state import CodecError, Option, RowState
from .tokens import TokenTable

R_BITS = 53  # resolution of the keyed shift r
FREQ_BITS = 32  # resolution of the CDF both sides share
SCALE = R_BITS - FREQ_BITS


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
        """The unfinished block is known to be one of ``n`` candidates: log2(2**l / n) bits
        (sender and receiver alike)."""
        n = state.extra.get("n")
        return float(state.extra["length"] - math.log2(n)) if n else 0.0

    def _shift(self, state: RowState) -> int:
        """The keyed uniform ``r``, as an integer in units of 2**-R_BITS."""
        return int(state.rng("sparsamp").bits(R_BITS), 2)

    @staticmethod
    def _cdf(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Tokens (id order), integer CDF in units of 2**-FREQ_BITS, and the rounding's KL."""
        tokens, freqs = quantize(p, FREQ_BITS, by_probability=False)
        return tokens, np.concatenate([[0], np.cumsum(freqs)]), quantized_kl(p, tokens, freqs)

    @staticmethod
    def _survivors(lo: int, hi: int, r: int, n: int) -> tuple[int, int]:
        """(first index, count) of candidates k < n whose point frac(k/n + r) lies in the
        token's interval [lo, hi) (both in CDF units, ``r`` in shift units): exact integers."""
        start = _ceil_shift(((lo << SCALE) - r) * n, R_BITS)
        return start % n, _ceil_shift(((hi << SCALE) - r) * n, R_BITS) - start

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        block = state.extra
        if not block:
            length = self.block_length(state.sent, state.frame_len)
            bits = state.channel.take(state.sent, length)
            block.update(k=int("".join(map(str, bits)), 2), n=1 << length, length=length)
        tokens, cum, kl = self._cdf(p)
        state.kl += kl
        r, k, n = self._shift(state), block["k"], block["n"]
        # floor(frac(k/n + r) * 2**FREQ_BITS), exactly: the CDF cell that holds the point
        point = ((k << R_BITS) + r * n) % (n << R_BITS)
        cell = (point << FREQ_BITS) // (n << R_BITS)
        i = int(np.searchsorted(cum, cell, side="right")) - 1
        start, count = self._survivors(int(cum[i]), int(cum[i + 1]), r, n)
        k = (k - start) % n
        assert k < count, "sparsamp: the chosen token must hold the message point"
        if count == 1:
            state.sent += block["length"]
            block.clear()
        else:
            block.update(k=k, n=count)
        return int(tokens[i])

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        tokens, cum, _ = self._cdf(p)
        done = state.extra.get("done", 0)  # channel bits of the blocks already decoded
        length = self.block_length(done, state.frame_len)
        n = state.extra.get("n", 1 << length)
        history = state.extra.get("history", ())
        r = None
        options = []
        for token, i in table.matches_in(text, cursor, tokens):
            r = r if r is not None else self._shift(state)
            start, count = self._survivors(int(cum[i]), int(cum[i + 1]), r, n)
            if count < 1:
                continue  # no candidate point falls on this token: the sender never sent it
            if count == 1:  # block decoded: undo the re-indexing, newest step first
                k = start
                for s, m in reversed(history):
                    k = (k + s) % m
                bits = [int(b) for b in f"{k:0{length}b}"]
                options.append((token, bits, {"done": done + length}))
            else:
                options.append((token, [], {"done": done, "n": count, "length": length,
                                            "history": history + ((start, n),)}))
        return sorted(options, key=lambda o: -p[o[0]])


def _ceil_shift(x: int, bits: int) -> int:
    """ceil(x / 2**bits) for any integer x."""
    return -((-x) >> bits)
