"""Codes applied to finished text: the edits a sender makes after generation.

The model-based statistics read tokens; these codes hide bits in characters the tokens barely
change, or in word choices a thesaurus allows, and are the families the ``format`` detector
and the supervised ones exist for. Each edit takes clean transcripts (the null codec's, so the
clean side is sampled by the same pipeline) and a payload per transcript, and returns
stego transcripts (label 1, the bits carried in ``meta``); :meth:`TextEdit.read` gets the bits
back from the text alone.

- ``whitespace``: one bit per gap between words, a single space (0) or two (1);
- ``zero-width``: one bit per gap, a zero-width space after the word (1) or none (0);
- ``homoglyph``: one bit per Latin letter that has a Cyrillic twin, which is sent for a 1;
- ``synonym``: one bit per word of a small built-in thesaurus of interchangeable pairs, the
  pair's first word (0) or second (1) (lexical steganography, as in Chang and Clark 2014,
  with a thesaurus of a few dozen pairs instead of a paraphrase database).

Bits are masked with the keyed stream (the transcript id as nonce), so a payload of zeros does
not read as untouched text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from .payload import KeyedStream
from .transcripts import Transcript

HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у",
              "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М",
              "O": "О", "P": "Р", "T": "Т", "X": "Х"}
SYNONYM_PAIRS = [
    ("big", "large"), ("small", "little"), ("begin", "start"), ("quick", "fast"),
    ("help", "assist"), ("show", "display"), ("buy", "purchase"), ("end", "finish"),
    ("often", "frequently"), ("maybe", "perhaps"), ("about", "around"), ("also", "additionally"),
    ("choose", "select"), ("make", "create"), ("use", "utilize"), ("get", "obtain"),
    ("need", "require"), ("important", "crucial"), ("easy", "simple"), ("hard", "difficult"),
    ("answer", "reply"), ("idea", "notion"), ("job", "task"), ("way", "method"),
    ("enough", "sufficient"), ("keep", "retain"), ("try", "attempt"), ("many", "numerous"),
    ("shows", "displays"), ("helps", "assists"), ("makes", "creates"), ("uses", "utilizes"),
    ("gets", "obtains"), ("needs", "requires"), ("tries", "attempts"), ("ways", "methods"),
    ("ideas", "notions"), ("jobs", "tasks"), ("people", "individuals"), ("world", "globe"),
]
_WORD = re.compile(r"[A-Za-z]+")


class TextEdit:
    """A code in the characters or words of finished text."""

    name = "edit"

    def slots(self, text: str) -> list[tuple[int, int, str, str]]:
        """Every place a bit can go: ``(start, end, text for 0, text for 1)``, in order."""
        raise NotImplementedError

    def _bits(self, t: Transcript, key: bytes, n: int) -> list[int]:
        return [int(b) for b in KeyedStream(key, f"{t.id}/{self.name}").bits(n)]

    def write(self, t: Transcript, payload: str, key: bytes) -> Transcript:
        """``t`` with ``payload`` (cycled over the slots the text has) written in."""
        slots = self.slots(t.text)
        mask = self._bits(t, key, len(slots))
        parts, at, sent = [], 0, []
        for i, (start, end, zero, one) in enumerate(slots):
            bit = int(payload[i % len(payload)]) if payload else 0
            sent.append(bit)
            parts += [t.text[at:start], one if bit ^ mask[i] else zero]
            at = end
        text = "".join(parts) + t.text[at:]
        bits = "".join(map(str, sent))
        meta = {**t.meta, "edit": self.name, "bits_embedded": len(bits), "edit_bits": bits,
                "codec": self.name, "codec_params": {}}
        return dataclasses.replace(t, text=text, label=1, payload=payload, meta=meta)

    def read(self, t: Transcript, key: bytes) -> str:
        """The bits in ``t``'s text, in slot order."""
        slots = self.slots(t.text)
        mask = self._bits(t, key, len(slots))
        return "".join(str(int(t.text[s:e] == one) ^ m) for (s, e, _, one), m in zip(slots, mask))

    def apply(self, clean: Sequence[Transcript], payloads: Sequence[str], key: bytes,
              source: str | None = None) -> list[Transcript]:
        return [dataclasses.replace(self.write(t, p, key), source=source or self.name)
                for t, p in zip(clean, payloads)]


class Whitespace(TextEdit):
    name = "whitespace"

    def slots(self, text):
        # a single space between two visible characters, or two spaces (a 1 already written)
        return [(m.start(), m.end(), " ", "  ") for m in re.finditer(r"(?<=\S) {1,2}(?=\S)", text)]


class ZeroWidth(TextEdit):
    name = "zero-width"

    def slots(self, text):
        out = []
        for m in re.finditer(r"(?<=\S)\u200b? (?=\S)", text):
            out.append((m.start(), m.end(), " ", "\u200b "))
        return out


_LATIN_OF = {v: k for k, v in HOMOGLYPHS.items()}
_PAIR_OF = {w: pair for pair in SYNONYM_PAIRS for w in pair}


class Homoglyph(TextEdit):
    name = "homoglyph"

    def slots(self, text):
        out = []
        for i, ch in enumerate(text):
            if ch in HOMOGLYPHS:
                out.append((i, i + 1, ch, HOMOGLYPHS[ch]))
            elif ch in _LATIN_OF:
                out.append((i, i + 1, _LATIN_OF[ch], ch))
        return out


class Synonym(TextEdit):
    name = "synonym"

    def slots(self, text):
        out = []
        for m in _WORD.finditer(text):
            word = m.group()
            pair = _PAIR_OF.get(word.lower())
            if pair is None:
                continue
            zero, one = (w.capitalize() if word[0].isupper() else w for w in pair)
            out.append((m.start(), m.end(), zero, one))
        return out


EDITS: dict[str, type[TextEdit]] = {c.name: c for c in (Whitespace, ZeroWidth, Homoglyph, Synonym)}


def make_edit(name: str) -> TextEdit:
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; choose from {', '.join(EDITS)}")
    return EDITS[name]()
