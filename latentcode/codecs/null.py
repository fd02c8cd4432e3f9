"""The null codec: the codecs' own sampling pipeline with nothing hidden.

Clean text from :func:`latentcode.sampling.sample_clean` differs from codec text in ways that
have nothing to do with hidden bits: the codecs run the model in float64, mask tokens that
would break a UTF-8 character, forbid stopping while a frame is being embedded, and draw
their randomness from the keyed stream. A measurement that compares stego text with that clean
text measures those differences too. The null codec samples exactly as a codec's sender does
on a payload longer than the response (every step masked the same way, the same keyed
uniform per step, no stop before ``max_new_tokens``) and embeds nothing: it is the control
a codec's distortion is measured against (``benchmarks/codecs.py``), and a source of clean
negatives matched to codec positives. Its transcripts have label 0 and no payload; they
cannot be decoded.
"""

from __future__ import annotations

import numpy as np

from .base import Codec
from .state import CodecError, Option, RowState
from .tokens import TokenTable


class NullCodec(Codec):
    name = "null"
    carries_payload = False

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        return self.plain_step(p, state)

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        raise CodecError("the null codec hides nothing: there is nothing to decode")
