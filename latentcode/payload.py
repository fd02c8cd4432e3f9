"""Payloads: bit strings, seeded random payloads, keyed pseudo-random streams, bit accuracy.

A payload is a ``str`` of ``'0'``/``'1'`` characters: readable in JSONL, exact, and easy to
slice. Keys are raw bytes; a key file holds any bytes (we hash them), so ``head -c 32
/dev/urandom > k`` and a passphrase in a text file both work.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import struct
from collections.abc import Sequence
from pathlib import Path

BIT_CHARS = frozenset("01")


class PayloadError(ValueError):
    """A payload or key that cannot be used as given."""


def is_bits(value: object) -> bool:
    """True for a non-empty string of '0' and '1'."""
    return isinstance(value, str) and bool(value) and set(value) <= BIT_CHARS


def check_bits(value: object, what: str = "payload") -> str:
    if not is_bits(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise PayloadError(f"{what} must be a non-empty string of 0 and 1, got {shown}")
    return value  # type: ignore[return-value]


def random_bits(n_bits: int, rng: random.Random) -> str:
    return "".join("1" if rng.getrandbits(1) else "0" for _ in range(n_bits))


def random_payloads(n: int, n_bits: int, seed: int) -> list[str]:
    """``n`` payloads of ``n_bits`` uniform random bits; the same seed gives the same list."""
    if n_bits < 1:
        raise PayloadError(f"n_bits must be at least 1, got {n_bits}")
    rng = random.Random(f"latentcode-payload-{seed}")
    return [random_bits(n_bits, rng) for _ in range(n)]


def bytes_to_bits(data: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in data)


def bits_to_bytes(bits: str) -> bytes:
    """Big-endian packing; the string is right-padded with zeros to whole bytes."""
    check_bits(bits, "bits")
    padded = bits + "0" * (-len(bits) % 8)
    return bytes(int(padded[i : i + 8], 2) for i in range(0, len(padded), 8))


def xor_bits(a: str, b: str) -> str:
    if len(a) != len(b):
        raise PayloadError(f"cannot xor {len(a)} bits with {len(b)} bits")
    return "".join("1" if x != y else "0" for x, y in zip(a, b))


def bit_accuracy(true: str, decoded: str | None) -> float:
    """Fraction of the true payload's positions decoded correctly.

    Missing positions (a short or failed decode) count as wrong; extra decoded bits are
    ignored, since codecs may pad the last block.
    """
    check_bits(true, "true payload")
    if not decoded:
        return 0.0
    hits = sum(t == d for t, d in zip(true, decoded))
    return hits / len(true)


def mean_bit_accuracy(true: Sequence[str], decoded: Sequence[str | None]) -> float:
    if len(true) != len(decoded):
        raise PayloadError(f"{len(true)} payloads but {len(decoded)} decodes")
    if not true:
        raise PayloadError("no payloads to compare")
    return sum(map(bit_accuracy, true, decoded)) / len(true)


# --------------------------------------------------------------------------------- keys


def new_key() -> bytes:
    return os.urandom(32)


def read_key_file(path: str | os.PathLike) -> bytes:
    """A key is the SHA-256 of the file's bytes, so any file content is a valid key."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PayloadError(
            f"{p}: key file not found (make one with: head -c 32 /dev/urandom > {p})"
        ) from None
    if not data:
        raise PayloadError(f"{p}: key file is empty; a key needs at least one byte")
    return hashlib.sha256(data).digest()


class KeyedStream:
    """A keyed pseudo-random stream: HMAC-SHA256 in counter mode.

    Sender and receiver who share ``key`` and ``nonce`` (e.g. the transcript's prompt) draw
    identical bits and uniforms; without the key they look uniformly random. Used by codecs
    that mask the message (Meteor) or need shared randomness (Discop, iMEC).
    """

    def __init__(self, key: bytes, nonce: bytes | str = b""):
        if not key:
            raise PayloadError("key must be non-empty bytes")
        self._key = bytes(key)
        self._nonce = nonce.encode() if isinstance(nonce, str) else bytes(nonce)
        self._counter = 0
        self._buffer = b""

    def _block(self) -> bytes:
        msg = self._nonce + struct.pack(">Q", self._counter)
        self._counter += 1
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def read(self, n_bytes: int) -> bytes:
        while len(self._buffer) < n_bytes:
            self._buffer += self._block()
        out, self._buffer = self._buffer[:n_bytes], self._buffer[n_bytes:]
        return out

    def bits(self, n_bits: int) -> str:
        return bytes_to_bits(self.read((n_bits + 7) // 8))[:n_bits]

    def uniform(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        (word,) = struct.unpack(">Q", self.read(8))
        return (word >> 11) * (1.0 / (1 << 53))
