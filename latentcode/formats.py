"""Where users already keep transcripts: JSONL (ours, or chat ``messages``), Parquet, inspect_ai logs.

Each reader turns a file into ``(position, record)`` pairs: a plain dict in our JSONL form (or
the chat form) that :func:`latentcode.transcripts.parse_transcript` checks and maps like any
JSONL line, or a :class:`LineError` for a record that cannot be mapped. The position is the
line of a JSONL file, the row of a Parquet file and the sample of an inspect log (all from 1),
so every error still reads ``file:position: field: what to do``.

- **Parquet** (Hugging Face chat datasets saved with ``to_parquet``, or ``latentcode export``):
  our columns (``id``, ``prompt``, ``text``, ``label``, ``payload``, ``source``, ``meta`` as a
  struct or JSON text, ``scores.<detector>`` float columns) or a ``messages`` column of
  ``{role, content}`` structs. Read in row batches with pyarrow, so a large file streams.
- **inspect_ai logs** (``.eval``, or an inspect ``.json`` log): read through inspect_ai's own
  ``read_eval_log_samples`` (the optional extra ``latentcode[inspect]``). Each sample becomes
  one transcript: its messages in chat form (the last assistant message is the text), id
  ``<sample id>`` (``-e<epoch>`` added when the log has several epochs), and ``label``,
  ``payload``, ``source`` taken from the sample's metadata when it has them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from .jsonl import LineError, iter_json_objects

Record = tuple[int, "dict | LineError"]
PARQUET_BATCH_ROWS = 4096
SCORE_PREFIX = "scores."


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(f"{what} needs the optional extra latentcode[{extra}] "
                         f"(`pip install 'latentcode[{extra}]'`, which provides {module})")


def file_format(path: str | os.PathLike) -> str:
    """``jsonl``, ``parquet`` or ``inspect``: by suffix, and for ``.json`` by a look at the start
    (an inspect log is one indented JSON object; our JSONL has one object per line)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".eval":
        return "inspect"
    if suffix == ".json" and _looks_like_inspect_json(path):
        return "inspect"
    return "jsonl"


def _looks_like_inspect_json(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    first_line = head.split(b"\n", 1)[0].strip()
    return first_line == b"{" and b'"version"' in head


def iter_records(path: str | os.PathLike, max_line_bytes: int) -> Iterator[Record]:
    """The records of one file, whatever its format."""
    kind = file_format(path)
    if kind == "parquet":
        yield from _parquet_records(path)
    elif kind == "inspect":
        yield from _inspect_records(path)
    else:
        yield from iter_json_objects(path, max_line_bytes)


# ---------------------------------------------------------------------------- Parquet


def _parquet_records(path: str | os.PathLike) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError:
        yield 0, LineError(name, 0, "(file)", "file not found")
        return
    except (OSError, pa.ArrowException) as err:
        yield 0, LineError(name, 0, "(file)", f"not a readable Parquet file ({err})")
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for obj in batch.to_pylist():
            row += 1
            yield row, _from_columns(obj, name, row)


def _from_columns(obj: dict, file: str, row: int) -> dict | LineError:
    """One Parquet row as a JSONL-style record: nulls dropped, ``meta`` JSON text decoded,
    ``scores.<name>`` columns gathered into ``scores``."""
    out: dict = {}
    scores: dict = {}
    for key, value in obj.items():
        if value is None:
            continue
        if key.startswith(SCORE_PREFIX):
            scores[key[len(SCORE_PREFIX):]] = value
        elif key in ("meta", "extra") and isinstance(value, str):
            try:
                decoded = json.loads(value)
            except json.JSONDecodeError as err:
                return LineError(file, row, key, f"is text but not JSON ({err.msg}); write it "
                                                 "as a struct column or as JSON text")
            if key == "extra" and isinstance(decoded, dict):
                out.update({k: v for k, v in decoded.items() if k not in out})
            else:
                out[key] = decoded
        else:
            out[key] = value
    if scores:
        out["scores"] = {**out.get("scores", {}), **scores}
    return out


# ----------------------------------------------------------------------- inspect_ai logs


def _inspect_records(path: str | os.PathLike) -> Iterator[Record]:
    try:
        from inspect_ai.log import read_eval_log, read_eval_log_samples
    except ImportError:
        raise MissingExtraError("reading inspect_ai logs", "inspect", "inspect_ai") from None
    name = str(path)
    if not Path(path).is_file():
        yield 0, LineError(name, 0, "(file)", "file not found")
        return
    try:
        header = read_eval_log(str(path), header_only=True)
        samples = read_eval_log_samples(str(path), all_samples_required=False)
        epochs = int(getattr(header.eval.config, "epochs", None) or 1)
        task, model = header.eval.task, header.eval.model
        for position, sample in enumerate(samples, start=1):
            yield position, _from_inspect_sample(sample, name, position, task, model, epochs)
    except Exception as err:  # noqa: BLE001 (inspect's own reader: a corrupt or foreign file)
        yield 0, LineError(name, 0, "(file)", f"inspect_ai could not read this log: {err}")


def _from_inspect_sample(sample, file: str, position: int, task: str, model: str,
                         epochs: int) -> dict | LineError:
    """One inspect ``EvalSample`` in chat form; metadata may carry our label fields."""
    where = f"sample {sample.id!r} (epoch {sample.epoch})"
    messages = [{"role": m.role, "content": m.text} for m in sample.messages
                if m.role in ("system", "user", "assistant")]
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        completion = sample.output.completion if sample.output else ""
        if not completion.strip():
            why = f" (the sample errored: {sample.error.message})" if sample.error else ""
            return LineError(file, position, "messages",
                             f"{where} has no assistant text to score{why}; drop it or re-run it")
        messages.append({"role": "assistant", "content": completion})
    metadata = dict(sample.metadata or {})
    record: dict = {"id": str(sample.id) if epochs == 1 else f"{sample.id}-e{sample.epoch}",
                    "messages": messages}
    for key in ("label", "payload", "source"):
        if key in metadata:
            record[key] = metadata.pop(key)
    record.setdefault("source", task)
    record["meta"] = {"inspect": {"task": task, "model": model, "sample_id": sample.id,
                                  "epoch": sample.epoch, "log": file},
                      **_jsonable(metadata)}
    return record


def _jsonable(value):
    """Metadata as plain JSON (inspect allows anything pydantic can dump)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"unreadable_metadata": str(value)}
