"""Meteor (Kaptchuk, Jois, Green & Rubin 2021): keyed-mask sampling with the reorder step.

Each step the next ``precision`` channel bits, XOR-ed with a fresh keyed mask for that step,
form a point ``r`` in ``[0, 2**precision)``; the token whose quantized interval holds ``r`` is
sent. Because ``r`` is pseudo-random, the token follows the (quantized) model distribution. The
receiver sees the token, hence its interval ``[lo, hi)``: the leading bits shared by ``lo`` and
``hi - 1`` are the leading bits of ``r``, so exactly that many channel bits are embedded and the
sender moves on by that many. The fresh per-step mask matters: bits not embedded at this step are
reused at the next, and without a new mask the two samples would be correlated.

Reorder step: the intervals are laid out from the most to the least likely token, so the large
intervals start at aligned boundaries and share more leading bits (the paper's reordering
heuristic, which raises capacity without changing the distribution).
"""

from __future__ import annotations

import numpy as np

from .base import Codec
from .distributions import quantize, quantized_kl
from .state import CodecError, Option, RowState
from .tokens import TokenTable


class Meteor(Codec):
    name = "meteor"

    def __init__(self, *, precision: int = 32, reorder: bool = True, **sampling):
        super().__init__(**sampling)
        if not 16 <= precision <= 48:
            raise CodecError(f"precision must be in [16, 48], got {precision}")
        self.precision, self.reorder = precision, reorder

    def params(self) -> dict:
        return {**super().params(), "precision": self.precision, "reorder": self.reorder}

    def intervals(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens in layout order and the integer bounds of their intervals (len + 1)."""
        tokens, freqs = quantize(p, self.precision, by_probability=self.reorder)
        return tokens, np.concatenate([[0], np.cumsum(freqs)])

    def _shared_prefix(self, lo: int, hi: int) -> int:
        return self.precision - (lo ^ (hi - 1)).bit_length()

    def _mask(self, state: RowState) -> list[int]:
        return [int(b) for b in state.rng("meteor").bits(self.precision)]

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        tokens, bounds = self.intervals(p)
        state.kl += quantized_kl(p, tokens, np.diff(bounds))
        mask = self._mask(state)
        bits = [c ^ m for c, m in zip(state.channel.take(state.sent, self.precision), mask)]
        r = int("".join(map(str, bits)), 2)
        s = int(np.searchsorted(bounds, r, side="right")) - 1
        state.sent += self._shared_prefix(int(bounds[s]), int(bounds[s + 1]))
        return int(tokens[s])

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        tokens, bounds = self.intervals(p)
        mask = None
        options = []
        for token, s in table.matches_in(text, cursor, tokens):
            lo, hi = int(bounds[s]), int(bounds[s + 1])
            k = self._shared_prefix(lo, hi)
            mask = mask or self._mask(state)
            r_bits = [(lo >> (self.precision - 1 - i)) & 1 for i in range(k)]
            options.append((token, [b ^ m for b, m in zip(r_bits, mask)], {}))
        return sorted(options, key=lambda o: -p[o[0]])
