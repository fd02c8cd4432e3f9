"""Arithmetic coding of the message into tokens (Ziegler, Deng & Rush 2019).

The sender runs an arithmetic *decoder* on the (masked, hence uniform-looking) channel bits:
each step it quantizes the model's distribution to integer frequencies and emits the token
whose interval holds the message point, so the text is a sample of the quantized model. The
receiver runs the arithmetic *encoder* over the tokens it reads, and the bits it emits are the
message. Integer coding with underflow handling (Witten, Neal & Cleary 1987), precision 32 bits.

``top_k`` (0 = every token) and the quantization (tokens whose probability rounds to zero at
``2**-freq_bits`` are dropped) are the only departures from the model; the summed KL is
recorded per transcript.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Codec
from .distributions import quantize, quantized_kl
from .state import CodecError, Option, RowState
from .tokens import TokenTable

PRECISION = 32
FULL = (1 << PRECISION) - 1
HALF = 1 << (PRECISION - 1)
QUARTER = 1 << (PRECISION - 2)


class Arithmetic(Codec):
    name = "arithmetic"

    def __init__(self, *, top_k: int = 0, freq_bits: int = 24, **sampling):
        super().__init__(**sampling)
        if not 8 <= freq_bits <= PRECISION - 2:
            raise CodecError(f"freq_bits must be in [8, {PRECISION - 2}], got {freq_bits}")
        if top_k < 0:
            raise CodecError(f"top_k must be >= 0 (0 = all tokens), got {top_k}")
        self.top_k, self.freq_bits = top_k, freq_bits

    def params(self) -> dict:
        return {**super().params(), "top_k": self.top_k, "freq_bits": self.freq_bits}

    def quantize(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (most likely first) and their integer frequencies summing to 2**freq_bits."""
        return quantize(p, self.freq_bits, top_k=self.top_k)

    def in_flight_bits(self, state: RowState) -> float:
        """Underflow bits pending, and what the current interval's width already pins down."""
        ac = state.extra
        if not ac:
            return 0.0
        return ac["pending"] + PRECISION - math.log2(ac["high"] - ac["low"] + 1)

    @staticmethod
    def _narrow(low: int, high: int, lo_cum: int, hi_cum: int, total: int) -> tuple[int, int]:
        span = high - low + 1
        return low + span * lo_cum // total, low + span * hi_cum // total - 1

    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int:
        ac = state.extra
        if not ac:  # first step: the message point is the first PRECISION channel bits
            value = int("".join(map(str, state.channel.take(0, PRECISION))), 2)
            ac.update(low=0, high=FULL, value=value, next_bit=PRECISION, pending=0)
        tokens, freqs = self.quantize(p)
        state.kl += quantized_kl(p, tokens, freqs)
        cum = np.concatenate([[0], np.cumsum(freqs)])
        total = int(cum[-1])
        low, high, value = ac["low"], ac["high"], ac["value"]
        target = ((value - low + 1) * total - 1) // (high - low + 1)
        s = int(np.searchsorted(cum, target, side="right")) - 1
        low, high = self._narrow(low, high, int(cum[s]), int(cum[s + 1]), total)
        while True:
            if high < HALF:
                state.sent += 1 + ac["pending"]
                ac["pending"] = 0
            elif low >= HALF:
                state.sent += 1 + ac["pending"]
                ac["pending"] = 0
                low, high, value = low - HALF, high - HALF, value - HALF
            elif low >= QUARTER and high < 3 * QUARTER:
                ac["pending"] += 1
                low, high, value = low - QUARTER, high - QUARTER, value - QUARTER
            else:
                break
            low, high = 2 * low, 2 * high + 1
            value = 2 * value + state.channel[ac["next_bit"]]
            ac["next_bit"] += 1
        ac.update(low=low, high=high, value=value)
        return int(tokens[s])

    def decode_step(self, p, state, table, text, cursor) -> list[Option]:
        tokens, freqs = self.quantize(p)
        cum = np.concatenate([[0], np.cumsum(freqs)])
        total = int(cum[-1])
        ac = state.extra or {"low": 0, "high": FULL, "pending": 0}
        options = []
        for token, s in table.matches_in(text, cursor, tokens):
            low, high = self._narrow(ac["low"], ac["high"], int(cum[s]), int(cum[s + 1]), total)
            pending, bits = ac["pending"], []
            while True:
                if high < HALF:
                    bits += [0] + [1] * pending
                    pending = 0
                elif low >= HALF:
                    bits += [1] + [0] * pending
                    pending = 0
                    low, high = low - HALF, high - HALF
                elif low >= QUARTER and high < 3 * QUARTER:
                    pending += 1
                    low, high = low - QUARTER, high - QUARTER
                else:
                    break
                low, high = 2 * low, 2 * high + 1
            options.append((token, bits, {"low": low, "high": high, "pending": pending}))
        return sorted(options, key=lambda o: -p[o[0]])
