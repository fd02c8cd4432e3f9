"""The one transcript format: codecs and trainers write it, detectors score it, reports read it.

A transcript is one JSON object per line::

    {"id": "clean-0001", "prompt": "Review a café.", "text": "The coffee was ...",
     "label": 0, "payload": null, "source": "clean", "meta": {...}, "scores": {...}}

``label`` is 1 when the text carries a payload, 0 when clean, absent when unknown; ``payload``
is the hidden bit string when known; ``scores`` maps detector names to suspicion scores
(higher = more suspicious). Unknown top-level fields are kept in ``extra`` and written back.

The chat form ``{"messages": [{"role": ..., "content": ...}, ...]}`` is read too: the last
assistant message is the text, the user message before it is the prompt, and any longer
context is kept in ``meta["context"]``. Parquet files and inspect_ai logs are read into the same
record (``formats.py``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .formats import iter_records
from .jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    LineError,
    RecordError,
    write_jsonl,
)
from .payload import is_bits

FIELDS = ("id", "prompt", "text", "label", "payload", "source", "meta", "scores")


class TranscriptError(RecordError):
    """Malformed transcripts; every problem is listed as ``file:line: field: message``."""

    def __init__(self, errors: list[LineError]):
        super().__init__(errors, what="transcripts")


@dataclass
class Transcript:
    id: str
    text: str
    prompt: str = ""
    label: int | None = None
    payload: str | None = None
    source: str | None = None
    meta: dict = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = _field_problems(vars(self))
        if problems:
            raise ValueError("; ".join(f"{name}: {msg}" for name, msg in problems))

    def to_dict(self) -> dict:
        """The JSON object written for this transcript (``None`` fields are left out)."""
        out: dict = {"id": self.id, "prompt": self.prompt, "text": self.text}
        for name in ("label", "payload", "source"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["meta"] = self.meta
        out["scores"] = self.scores
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


# ---------------------------------------------------------------------------- checking


def _field_problems(fields: dict) -> list[tuple[str, str]]:
    """Every (field, message) wrong with a transcript; shared by the reader and the constructor."""
    t = SimpleNamespace(**fields)
    problems: list[tuple[str, str]] = []

    def bad(name: str, message: str) -> None:
        problems.append((name, message))

    if not isinstance(t.id, str) or not t.id:
        bad("id", f"must be a non-empty string, got {t.id!r}")
    if not isinstance(t.prompt, str):
        bad("prompt", f"must be a string, got {type(t.prompt).__name__}")
    if not isinstance(t.text, str):
        bad("text", f"must be a string, got {type(t.text).__name__}")
    elif not t.text.strip():
        bad("text", "is empty; a transcript needs the model's response text")
    if t.label is not None and (isinstance(t.label, bool) or t.label not in (0, 1)):
        bad("label", f"must be 0 (clean), 1 (carries a payload) or absent, got {t.label!r}")
    if t.payload is not None and not is_bits(t.payload):
        shown = repr(t.payload) if len(repr(t.payload)) < 40 else repr(t.payload)[:36] + "...'"
        bad("payload", f"must be a non-empty string of 0 and 1, got {shown}")
    elif t.payload is not None and t.label == 0:
        bad("payload", "is given but label is 0 (clean); use label 1 or drop the payload")
    if t.source is not None and (not isinstance(t.source, str) or not t.source):
        bad("source", f"must be a non-empty string or absent, got {t.source!r}")
    if not isinstance(t.meta, dict):
        bad("meta", f"must be an object, got {type(t.meta).__name__}")
    if not isinstance(t.scores, dict):
        bad("scores", f"must be an object, got {type(t.scores).__name__}")
        return problems
    for name, value in t.scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(f"scores.{name}", f"must be a number, got {value!r}")
        elif not math.isfinite(value):
            bad(f"scores.{name}", f"is {value}; scores must be finite (re-run the detector)")
    return problems


def _from_chat(obj: dict) -> tuple[dict, list[tuple[str, str]]]:
    """Map the chat form onto transcript fields."""
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        return {}, [("messages", "must be a non-empty list of {role, content} objects")]
    problems: list[tuple[str, str]] = []
    contents: list[str | None] = []
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # OpenAI-style content parts
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            content = "".join(p for p in parts if isinstance(p, str)) if parts else None
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            problems.append((f"messages[{i}].role", "each message needs a string role"))
        elif not isinstance(content, str):
            problems.append((f"messages[{i}].content", "must be a string"))
        contents.append(content if isinstance(content, str) else None)
    if problems:
        return {}, problems
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return {}, [("messages", "has no assistant message; the last one is the text to score")]
    users = [i for i in range(last) if messages[i]["role"] == "user"]
    fields = {k: v for k, v in obj.items() if k != "messages"}
    fields["text"] = contents[last]
    fields["prompt"] = contents[users[-1]] if users else ""
    context = [{"role": m["role"], "content": contents[i]} for i, m in enumerate(messages[:last])]
    if len(context) > 1:
        meta = fields.get("meta") if isinstance(fields.get("meta"), dict) else {}
        fields["meta"] = {**meta, "context": context}
    return fields, []


def parse_transcript(obj: dict, file: str, line: int) -> tuple[Transcript | None, list[LineError]]:
    """Turn one decoded JSON object into a Transcript, or into every error it has."""
    problems: list[tuple[str, str]] = []
    if "messages" in obj and "text" not in obj:
        obj, problems = _from_chat(obj)
        if problems:
            return None, [LineError(file, line, f, m) for f, m in problems]
    if "text" not in obj:
        return None, [LineError(file, line, "text", "missing; every transcript needs the response "
                                                    "text (or a chat 'messages' list)")]
    raw_id = obj.get("id")
    if raw_id is None:
        raw_id = f"{Path(file).stem}-{line}"  # stable for a given file
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    fields = {
        "id": raw_id,
        "text": obj["text"],
        "prompt": obj.get("prompt", ""),
        "label": obj.get("label"),
        "payload": obj.get("payload"),
        "source": obj.get("source"),
        "meta": obj.get("meta", {}) if obj.get("meta") is not None else {},
        "scores": obj.get("scores", {}) if obj.get("scores") is not None else {},
        "extra": {k: v for k, v in obj.items() if k not in FIELDS},
    }
    problems = _field_problems(fields)
    if problems:
        return None, [LineError(file, line, f, m) for f, m in problems]
    return Transcript(**fields), []


# ------------------------------------------------------------------------- reading/writing


def iter_transcripts(
    path: str | os.PathLike, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, Transcript | LineError]]:
    """Yield ``(line_number, transcript)`` for each record of one file, or its errors.

    JSONL, Parquet and inspect_ai logs alike (``formats.py``; the position is the line, row or
    sample). For readers that must point back at a record later (the report, when files
    disagree).
    """
    for lineno, obj in iter_records(path, max_line_bytes):
        if isinstance(obj, LineError):
            yield lineno, obj
            continue
        transcript, problems = parse_transcript(obj, str(path), lineno)
        if transcript is None:
            for problem in problems:
                yield lineno, problem
        else:
            yield lineno, transcript


def read_transcripts(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    locations: dict[str, tuple[str, int]] | None = None,
) -> list[Transcript]:
    """Read one or more transcript files (JSONL, chat JSONL, Parquet, inspect_ai logs); raise
    :class:`TranscriptError` listing every problem.

    Ids must be unique across all files read together. Pass a dict as ``locations`` to get
    each id's ``(file, line)``, for readers that point back at a record later.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Transcript] = []
    errors: list[LineError] = []
    seen: dict[str, tuple[str, int]] = {}
    for path in paths:
        n_before = len(out)
        for lineno, transcript in iter_transcripts(path, max_line_bytes=max_line_bytes):
            if isinstance(transcript, LineError):
                errors.append(transcript)
                continue
            if transcript.id in seen:
                first_file, first_line = seen[transcript.id]
                errors.append(LineError(str(path), lineno, "id", f"duplicate id {transcript.id!r} "
                                        f"(first seen at {first_file}:{first_line})"))
                continue
            seen[transcript.id] = (str(path), lineno)
            out.append(transcript)
        if len(out) == n_before and not any(e.file == str(path) for e in errors):
            errors.append(LineError(str(path), 0, "(file)", "contains no transcripts"))
    if errors:
        raise TranscriptError(errors)
    if locations is not None:
        locations.update(seen)
    return out


def write_transcripts(path: str | os.PathLike, transcripts: Iterable[Transcript]) -> None:
    """Write JSONL atomically: the file appears whole or not at all."""
    transcripts = list(transcripts)
    counts = Counter(t.id for t in transcripts)
    if len(counts) != len(transcripts):
        dupes = sorted(i for i, n in counts.items() if n > 1)[:5]
        raise ValueError(f"refusing to write duplicate transcript ids: {dupes}")
    write_jsonl(path, (t.to_dict() for t in transcripts))


def bits_per_token(transcript: Transcript) -> float | None:
    """Hidden bits per generated token, from ``meta``; ``None`` when the writer did not say.

    ``meta["bits_per_token"]`` wins when a writer (a trained channel, an external encoder) gives
    it; codecs record ``bits_embedded`` (+ ``bits_in_flight``, what an unfinished block already
    pins down) over ``n_tokens``. Clean transcripts carry 0.
    """
    meta = transcript.meta
    if isinstance(meta.get("bits_per_token"), (int, float)):
        return float(meta["bits_per_token"])
    if transcript.label == 0:
        return 0.0
    tokens = meta.get("n_tokens")
    if isinstance(meta.get("bits_embedded"), (int, float)) and isinstance(tokens, int) and tokens:
        return (meta["bits_embedded"] + float(meta.get("bits_in_flight", 0.0))) / tokens
    return None


def mean_bits_per_token(transcripts: Sequence[Transcript]) -> float | None:
    """Bits per token of a group: token-weighted where every token count is known, else the
    plain mean; ``None`` when any transcript does not say (see :func:`bits_per_token`)."""
    values = [(bits_per_token(t), t.meta.get("n_tokens")) for t in transcripts]
    if not values or any(v is None for v, _ in values):
        return None
    if all(isinstance(n, int) and n > 0 for _, n in values):
        return sum(v * n for v, n in values) / sum(n for _, n in values)
    return sum(v for v, _ in values) / len(values)
