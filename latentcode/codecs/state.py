"""What a codec's sender and receiver carry for one transcript (:class:`RowState`), what a
receiver's step offers (:data:`Option`), what decoding returns (:class:`DecodeResult`), and the
error codecs raise for input they cannot work with."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..payload import KeyedStream, bit_accuracy
from .framing import ChannelBits


class CodecError(ValueError):
    """Input a codec cannot work with (wrong dtype, unsupported tokenizer, bad payload)."""


@dataclass
class RowState:
    """Per-transcript state of a sender or a receiver."""

    key: bytes
    nonce: str
    channel: ChannelBits | None = None  # sender: the bits to embed
    receiving: bool = False  # receiver: bits come from the text, not from a payload
    sent: int = 0  # sender: channel bits fixed by the tokens so far
    frame_len: int = 0  # sender: bits of the frame; receiver: known once the header is read
    step: int = 0
    utf8: int = 0
    entropy: float = 0.0  # summed entropy (bits) of the distributions sampled while embedding
    kl: float = 0.0  # summed KL(stego step distribution || model), nats
    extra: dict = field(default_factory=dict)  # codec-specific (e.g. arithmetic interval)

    def rng(self, purpose: str) -> KeyedStream:
        """Shared randomness for this step, identical for sender and receiver."""
        return KeyedStream(self.key, f"{self.nonce}/{purpose}/{self.step}")

    @property
    def embedding(self) -> bool:
        return self.channel is not None and self.sent < self.frame_len


# A receiver's reading of one step: the token, the channel bits it carried, the codec's new
# private state (``RowState.extra``). Several options mean the text is ambiguous here.
Option = tuple[int, list[int], dict]


@dataclass
class DecodeResult:
    """What a receiver got out of one transcript.

    ``status`` is ``ok`` (CRC verified: ``bits`` is the payload), ``partial`` (the text ended
    before the frame did: ``recovered`` holds the unverified payload bits so far) or
    ``failed`` (wrong key, another codec's text, edited text: ``bits`` is None).
    """

    status: str
    bits: str | None
    recovered: str
    message: str
    tokens: int = 0
    backtracks: int = 0
    forward_tokens: int = 0  # tokens the model computed while searching (cost)

    def accuracy(self, true_payload: str) -> float:
        return bit_accuracy(true_payload, self.bits if self.bits is not None else self.recovered)
