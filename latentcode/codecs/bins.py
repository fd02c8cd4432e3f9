"""Vocabulary bins (Fang, Jaggi and Argyraki 2017, "Generating Steganographic Text with LSTMs").

The vocabulary is split into ``2**bits`` bins by a keyed hash of each token id, the same split
for every step (the family that keyed watermarks' green lists also belong to). Each embedding
step reads ``bits`` channel bits, keeps only the tokens of that bin and samples among them in
proportion to the model (``greedy``: the bin's most likely token, as in the paper). The
receiver reads the bits off the bin of each token it sees. No truncation by rank: the tokens
sent are as often from the tail as the bin's mass allows, so rank statistics see little; what
the model does see is the lost choice: a token's probability within its bin is ``2**bits``
times its model probability on average.

Sampling inside a random bin picks tokens the tokenizer would often split otherwise, so the
receiver's search over the readings of the text (shared with the reference codecs) backtracks
much more here and may give up on such text; the codec is a variant for the detectors'
generalisation benchmark, which needs its text, and is kept out of ``CODECS``.

``every`` embeds on every ``every``-th step only (the others are plain samples), and
``where="sentence"`` only on the first token of each sentence (after ``.``, ``!``, ``?`` or a
line break, and at the start), the acrostic family: position-restricted codes whose shift the
whole text dilutes. A step where a bin holds no allowed token (inside a multi-byte character,
say) carries nothing on either side.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from .base import Codec
from .state import CodecError, Option, RowState
from .tokens import TokenTable


@lru_cache(maxsize=16)
def bin_of_tokens(key: bytes, vocab: int, bits: int) -> np.ndarray:
    """The keyed bin (``0 .. 2**bits - 1``) of every token id."""
    seed = int.from_bytes(hashlib.sha256(b"latentcode/bins/" + key).digest()[:8], "big")
    out = np.random.default_rng(seed).integers(0, 2 ** bits, size=vocab)
    out.setflags(write=False)
    return out


class Bins(Codec):
    name = "bins"

    def __init__(self, *, bits: int = 2, greedy: bool = False, every: int = 1,
                 where: str = "all", **sampling):
        super().__init__(**sampling)
        if not 1 <= bits <= 8:
            raise CodecError(f"bits must be in 1..8, got {bits}")
        if every < 1:
            raise CodecError(f"every must be at least 1, got {every}")
        if where not in ("all", "sentence"):
            raise CodecError(f"where must be 'all' or 'sentence', got {where!r}")
        self.bits, self.greedy, self.every, self.where = bits, greedy, every, where

    def params(self) -> dict:
        return {**super().params(), "bits": self.bits, "greedy": self.greedy,
                "every": self.every, "where": self.where}

    @staticmethod
    def _after(token_bytes: bytes, state: RowState) -> dict:
        """The private state after a token: the last visible byte of the text so far."""
        visible = token_bytes.rstrip(b" ")[-1:]
        return {"end": visible or state.extra.get("end", b"")}

    def _masses(self, p: np.ndarray, state: RowState) -> tuple[np.ndarray, np.ndarray] | None:
        """Each token's bin and each bin's mass, or None where this step carries nothing."""
        if state.step % self.every:
            return None
        if self.where == "sentence" and state.extra.get("end", b".") not in (b".", b"!", b"?", b"\n"):
            return None
        bins = bin_of_tokens(state.key, len(p), self.bits)
        mass = np.bincount(bins, weights=p, minlength=2 ** self.bits)
        return (bins, mass) if np.all(mass > 0) else None

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        token = self._choose(p, state)
        state.extra = self._after(table.bytes[token], state)
        return token

    def _choose(self, p: np.ndarray, state: RowState) -> int:
        layout = self._masses(p, state)
        if layout is None:
            return self.plain_step(p, state)
        bins, mass = layout
        chosen = 0
        for _ in range(self.bits):
            chosen = 2 * chosen + int(state.channel[state.sent])
            state.sent += 1
        inside = np.where(bins == chosen, p, 0.0)
        if self.greedy:  # a point mass on each bin's most likely token
            best = np.zeros(2 ** self.bits)
            np.maximum.at(best, bins, p)
            state.kl += float(np.mean(np.log(2.0 ** -self.bits / best)))
            return int(np.argmax(inside))
        # uniform bits: KL(q || p) = sum over bins of 2**-bits * log(2**-bits / mass)
        state.kl += float(np.mean(np.log(2.0 ** -self.bits / mass)))
        return self.plain_step(inside, state)

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        layout = self._masses(p, state)
        found = [t for t in table.prefixes_of(text, cursor) if p[t] > 0]
        options = []
        for t in found:
            bits = []
            if layout is not None:
                b = int(layout[0][t])
                bits = [(b >> (self.bits - 1 - i)) & 1 for i in range(self.bits)]
            options.append((t, bits, self._after(table.bytes[t], state)))
        return sorted(options, key=lambda o: -p[o[0]])
