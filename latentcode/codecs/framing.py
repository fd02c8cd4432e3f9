"""What a codec actually embeds: a self-checking frame, masked with a keyed stream.

    frame = 16-bit payload length | 8-bit check of the length | payload | CRC-32 of all before
    channel bit i = frame bit i XOR keystream bit i   (after the frame: keystream bits)

The length check lets a receiver drop a wrong reading (wrong key, a misread token) after 24
bits instead of at the end of a frame whose length it misread; the CRC lets a decoder say "these bits are right" or "I could not recover them" instead of
returning wrong bits silently (wrong key, another codec's text, edited or truncated text).
The mask makes the embedded bits look uniform, which every codec here assumes (Ziegler et al.
2019 encrypt the message for the same reason), and it ties decoding to the key.
"""

from __future__ import annotations

import zlib

from ..payload import KeyedStream, PayloadError, bits_to_bytes, check_bits

LENGTH_BITS = 16
CHECK_BITS = 8
HEADER_BITS = LENGTH_BITS + CHECK_BITS
CRC_BITS = 32
MAX_PAYLOAD_BITS = (1 << LENGTH_BITS) - 1


def _crc(length_and_payload: str) -> str:
    return f"{zlib.crc32(bits_to_bytes(length_and_payload)) & 0xFFFFFFFF:032b}"


def frame_bits(payload: str) -> str:
    check_bits(payload)
    if len(payload) > MAX_PAYLOAD_BITS:
        raise PayloadError(f"payload of {len(payload)} bits exceeds {MAX_PAYLOAD_BITS} bits")
    head = _header(len(payload)) + payload
    return head + _crc(head)


def _header(n: int) -> str:
    length = f"{n:0{LENGTH_BITS}b}"
    return length + _crc(length)[-CHECK_BITS:]


def frame_length(payload_bits: int) -> int:
    return HEADER_BITS + payload_bits + CRC_BITS


def mask_stream(key: bytes, nonce: str) -> KeyedStream:
    return KeyedStream(key, f"{nonce}/mask")


class ChannelBits:
    """The infinite channel bit sequence a sender embeds: masked frame, then masked zeros."""

    def __init__(self, frame: str, key: bytes, nonce: str):
        self.frame = frame
        self._stream = mask_stream(key, nonce)
        self._bits: list[int] = []

    def __getitem__(self, i: int) -> int:
        while len(self._bits) <= i:
            chunk = self._stream.bits(256)
            base = len(self._bits)
            for j, m in enumerate(chunk):
                f = self.frame[base + j] if base + j < len(self.frame) else "0"
                self._bits.append(int(f) ^ int(m))
        return self._bits[i]

    def take(self, start: int, n: int) -> list[int]:
        return [self[i] for i in range(start, start + n)]


class FrameReader:
    """Receiver side: unmask channel bits and check the frame once it is complete.

    Stateless over the channel bits (they are passed in each time), so a decoder that backtracks
    can keep one reader for all its branches.
    """

    def __init__(self, key: bytes, nonce: str):
        self._stream = mask_stream(key, nonce)
        self._mask: list[int] = []

    def unmask(self, channel_bits: list[int]) -> str:
        while len(self._mask) < len(channel_bits):
            self._mask.extend(int(b) for b in self._stream.bits(256))
        return "".join(str(c ^ m) for c, m in zip(channel_bits, self._mask))

    @staticmethod
    def needed(frame: str) -> int | None:
        """Total frame bits expected, once a header has arrived: None before that, and 0 when
        the header fails its check (this reading of the text is wrong)."""
        if len(frame) < HEADER_BITS:
            return None
        n = int(frame[:LENGTH_BITS], 2)
        if n == 0 or frame[:HEADER_BITS] != _header(n):
            return 0
        return frame_length(n)

    def read(self, channel_bits: list[int]) -> tuple[bool, str | None, str]:
        """(complete, verified payload or None, payload bits recovered so far)."""
        frame = self.unmask(channel_bits)
        needed = self.needed(frame)
        if needed is None:
            return False, None, ""
        if needed == 0:
            return True, None, ""
        n = needed - HEADER_BITS - CRC_BITS
        partial = frame[HEADER_BITS:HEADER_BITS + n]
        if len(frame) < needed:
            return False, None, partial
        head = frame[:HEADER_BITS + n]
        ok = _crc(head) == frame[HEADER_BITS + n:needed]
        return True, (partial if ok else None), partial
