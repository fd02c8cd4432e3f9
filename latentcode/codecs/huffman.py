"""Huffman coding over the top-k next tokens (RNN-Stega, Yang et al. 2018).

Each step the ``k`` most likely tokens get a Huffman code built from their probabilities; the
sender reads channel bits to walk the code tree to a token. A token with code length ``L`` is
sent with probability ``2**-L`` instead of its model probability, which is what makes this
codec easy to detect: the KL to the model is recorded per transcript.
"""

from __future__ import annotations

import heapq

import numpy as np

from .base import Codec
from .distributions import most_likely_first
from .state import CodecError, Option, RowState
from .tokens import TokenTable


class Huffman(Codec):
    name = "huffman"

    def __init__(self, *, k: int = 16, **sampling):
        super().__init__(**sampling)
        if k < 2:
            raise CodecError(f"k must be at least 2, got {k}")
        self.k = k

    def params(self) -> dict:
        return {**super().params(), "k": self.k}

    def codes(self, p: np.ndarray) -> dict[int, str]:
        """Huffman codes of the top-k tokens (ties broken by rank, so both sides agree)."""
        top = most_likely_first(p, np.flatnonzero(p > 0), self.k)
        if len(top) == 1:
            return {int(top[0]): ""}
        heap = [(float(p[t]), rank, {int(t): ""}) for rank, t in enumerate(top)]
        heapq.heapify(heap)
        counter = len(heap)
        while len(heap) > 1:
            pa, _, a = heapq.heappop(heap)
            pb, _, b = heapq.heappop(heap)
            merged = {t: "0" + c for t, c in a.items()} | {t: "1" + c for t, c in b.items()}
            heapq.heappush(heap, (pa + pb, counter, merged))
            counter += 1
        return heap[0][2]

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        codes = self.codes(p)
        state.kl += sum(2.0 ** -len(c) * (-len(c) * np.log(2) - np.log(p[t])) for t, c in codes.items())
        by_code = {c: t for t, c in codes.items()}
        code = ""
        while code not in by_code:
            code += str(state.channel[state.sent])
            state.sent += 1
        return by_code[code]

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        codes = self.codes(p)
        options = [(t, [int(b) for b in codes[t]], {}) for t in table.prefixes_of(text, cursor)
                   if t in codes]
        return sorted(options, key=lambda o: -p[o[0]])
