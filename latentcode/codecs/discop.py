"""Discop with the recursive construction (Ding et al. 2023): provably secure, zero KL.

The step distribution (tokens sorted by probability) is split recursively into two halves of
nearly equal mass: a binary tree whose leaves are tokens. At each depth a shared uniform ``r``
(from the keyed stream) and its copy ``r + 1/2`` each pick a child by inverse CDF. Where the
two copies pick different children, the sender embeds one bit by choosing copy 0 or copy 1.
For any message, ``r`` (or ``r + 1/2``) is uniform, so the token is distributed exactly as
plain sampling: the KL to the model is zero, and nothing here changes the distribution.

The receiver knows ``r`` too, so of the few tokens that match the text at its cursor it keeps
only those the tree could have produced for some message; a wrong guess (rare: it needs a
second matching token that is also reachable) dies at the next steps or at the CRC.
"""

from __future__ import annotations

import numpy as np

from .base import Codec
from .distributions import most_likely_first
from .state import Option, RowState
from .tokens import TokenTable


class _Tree:
    """The implicit balanced-mass binary tree over one step's sorted distribution."""

    def __init__(self, p: np.ndarray, rng):
        self.tokens = most_likely_first(p, np.flatnonzero(p > 0))
        self.cum = np.concatenate([[0.0], np.cumsum(p[self.tokens])])
        self._rng, self._r = rng, []

    def r(self, depth: int) -> float:
        while len(self._r) <= depth:
            self._r.append(self._rng.uniform())
        return self._r[depth]

    def children(self, lo: int, hi: int, depth: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The child that copy 0 picks and the child that copy 1 picks at node [lo, hi)."""
        base, total = self.cum[lo], self.cum[hi] - self.cum[lo]
        m = int(np.searchsorted(self.cum, base + total / 2, side="left"))
        if m > lo + 1 and abs(self.cum[m - 1] - base - total / 2) <= abs(self.cum[m] - base - total / 2):
            m -= 1
        m = min(max(m, lo + 1), hi - 1)
        q = (self.cum[m] - base) / total
        r = self.r(depth)
        a, b = [(lo, m) if u < q else (m, hi) for u in (r, (r + 0.5) % 1.0)]
        return a, b

    def path_bits(self, token: int) -> list[int] | None:
        """Bits that lead the sender to ``token``, or None when no message reaches it."""
        hits = np.flatnonzero(self.tokens == token)
        if not len(hits):
            return None
        pos, lo, hi, depth, bits = int(hits[0]), 0, len(self.tokens), 0, []
        while hi - lo > 1:
            a, b = self.children(lo, hi, depth)
            in_a, in_b = a[0] <= pos < a[1], b[0] <= pos < b[1]
            if not (in_a or in_b):
                return None
            if a != b:
                bits.append(0 if in_a else 1)
            lo, hi = a if in_a else b
            depth += 1
        return bits


class Discop(Codec):
    name = "discop"

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        tree = _Tree(p, state.rng("discop"))
        lo, hi, depth = 0, len(tree.tokens), 0
        while hi - lo > 1:
            a, b = tree.children(lo, hi, depth)
            if a != b:
                bit = state.channel[state.sent]
                state.sent += 1
                a = b if bit else a
            lo, hi = a
            depth += 1
        return int(tree.tokens[lo])

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        tree = _Tree(p, state.rng("discop"))
        options = []
        for token in table.prefixes_of(text, cursor):
            if p[token] > 0 and (bits := tree.path_bits(token)) is not None:
                options.append((token, bits, {}))
        return sorted(options, key=lambda o: -p[o[0]])
