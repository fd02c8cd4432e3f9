"""Token tables: the bytes of every token of a byte-level BPE vocabulary, which tokens may
appear inside stego text, and the UTF-8 decoder state each token leaves behind. Sender and
receiver both work on bytes, because the text is all a receiver gets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .state import CodecError


@dataclass(frozen=True)
class TokenTable:
    """Bytes of every token, and which tokens may appear inside stego text."""

    bytes: tuple[bytes, ...]
    special: np.ndarray  # bool[vocab]: added/special tokens (never embedded, never in text)
    utf8_next: np.ndarray  # int8[4, vocab]: UTF-8 decoder state after the token, -1 = invalid
    by_bytes: dict[bytes, int]
    max_len: int

    def allowed(self, utf8_state: int) -> np.ndarray:
        return (self.utf8_next[utf8_state] >= 0) & ~self.special

    def prefixes_of(self, text: bytes, cursor: int) -> list[int]:
        """Every token whose bytes appear in ``text`` at ``cursor``, longest first."""
        found = []
        for n in range(min(self.max_len, len(text) - cursor), 0, -1):
            token = self.by_bytes.get(text[cursor:cursor + n])
            if token is not None:
                found.append(token)
        return found

    def matches_in(self, text: bytes, cursor: int, support: np.ndarray) -> list[tuple[int, int]]:
        """``(token, index in support)`` for every token of ``support`` (a codec's array of
        token ids) whose bytes appear in ``text`` at ``cursor``: the receiver's candidates."""
        found = self.prefixes_of(text, cursor)
        if not found:
            return []
        index = np.full(max(len(self.bytes), int(support.max(initial=0)) + 1), -1, dtype=np.int64)
        index[support] = np.arange(len(support))
        return [(token, int(index[token])) for token in found if index[token] >= 0]


def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-to-unicode map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _utf8_after(data: bytes, state: int) -> int:
    for byte in data:
        if state:
            if byte & 0xC0 != 0x80:
                return -1
            state -= 1
        elif byte < 0x80:
            continue
        elif byte & 0xE0 == 0xC0 and byte >= 0xC2:
            state = 1
        elif byte & 0xF0 == 0xE0:
            state = 2
        elif byte & 0xF8 == 0xF0 and byte <= 0xF4:
            state = 3
        else:
            return -1
    return state


@lru_cache(maxsize=8)
def _token_table(tokenizer) -> TokenTable:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = type(backend.decoder).__name__ if backend is not None else ""
    if decoder != "ByteLevel":
        raise CodecError(
            f"codecs need a byte-level BPE tokenizer (GPT-2, Llama-3, Qwen, SmolLM style); "
            f"this one decodes with {decoder or 'no fast backend'}"
        )
    to_byte = _byte_decoder()
    vocab_size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {}) | set(tokenizer.all_special_ids)
    table, special = [], np.zeros(vocab_size, dtype=bool)
    for i, piece in enumerate(pieces):
        if i in added or piece is None or any(ch not in to_byte for ch in piece):
            table.append(b"")
            special[i] = True
        else:
            table.append(bytes(to_byte[ch] for ch in piece))
    utf8 = np.full((4, vocab_size), -1, dtype=np.int8)
    for s in range(4):
        for i, data in enumerate(table):
            if data:
                utf8[s, i] = _utf8_after(data, s)
    by_bytes = {data: i for i, data in enumerate(table) if data}
    return TokenTable(tuple(table), special, utf8, by_bytes, max(map(len, table)))


def token_table(lm_or_tokenizer) -> TokenTable:
    tok = getattr(lm_or_tokenizer, "tokenizer", lm_or_tokenizer)
    return _token_table(tok)
