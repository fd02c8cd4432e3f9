"""JSON Lines plumbing shared by every record type: located errors, safe reading, atomic writing.

Readers collect every problem as a :class:`LineError` (``file:line: field: what is wrong``) and
raise them together in one :class:`RecordError`, so a user fixes a file in one pass. Writers
never leave a half-written file: they write a temporary sibling, fsync it, and rename it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_ERRORS_SHOWN = 200


@dataclass(frozen=True)
class LineError:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class RecordError(ValueError):
    """One or more malformed records; ``errors`` holds every one of them."""

    def __init__(self, errors: list[LineError], what: str = "records"):
        self.errors = errors
        files = sorted({e.file for e in errors})
        head = f"{len(errors)} problem(s) in {what} ({', '.join(files)}):"
        shown = [f"  {e}" for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")
        super().__init__("\n".join([head, *shown]))


def iter_json_objects(
    path: str | os.PathLike, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, dict | LineError]]:
    """Yield ``(line_number, object)`` for each non-blank line, or a ``LineError`` for it.

    Lines are read in bounded chunks, so an enormous line is reported, not loaded.
    """
    name = str(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        yield 0, LineError(name, 0, "(file)", "file not found")
        return
    except IsADirectoryError:
        yield 0, LineError(name, 0, "(file)", "is a folder, expected a JSONL file")
        return
    with handle:
        lineno = 0
        while raw := handle.readline(max_line_bytes + 1):
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(1 << 20)
                    size += len(raw)
                yield lineno, LineError(
                    name, lineno, "(line)",
                    f"line is {size:,} bytes, over the limit of {max_line_bytes:,}; split the "
                    "record or raise the limit (--max-line-bytes)",
                )
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, LineError(
                    name, lineno, "(line)",
                    f"invalid UTF-8 at byte {err.start}; re-save the file as UTF-8",
                )
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                yield lineno, LineError(
                    name, lineno, "(line)", f"not valid JSON: {err.msg} at column {err.colno}"
                )
                continue
            if not isinstance(obj, dict):
                yield lineno, LineError(
                    name, lineno, "(line)",
                    f"expected a JSON object, got {type(obj).__name__}",
                )
                continue
            yield lineno, obj


def dumps(obj: dict) -> str:
    """One compact JSON line; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary sibling of ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh staging folder beside ``path``; on success it replaces ``path`` whole.

    Readers see the old folder or the new one, never a mix; on any exception the staging
    folder is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_jsonl(path: str | os.PathLike, objects: Iterable[dict]) -> None:
    with atomic_open(path) as handle:
        for obj in objects:
            handle.write(dumps(obj) + "\n")


def write_json(path: str | os.PathLike, obj: object) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def claim_folder(folder: str | os.PathLike, config: dict, may_change: tuple[str, ...] = ()) -> bool:
    """Write ``folder/config.json``, or check the one a resumable run left there: False when
    it holds another config (the caller refuses the folder rather than mix two runs).

    ``may_change`` names top-level sections a resumed run may take anew because they do not
    touch what was already done (which detectors measure a finished run, how often it saves):
    without it, a new default there (a detector added to the battery) would lock every
    half-done run out of its folder. The file is then rewritten, so it says what the rest of
    the run used."""
    path = Path(folder) / "config.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved == config:
            return True
        fixed = {k: v for k, v in config.items() if k not in may_change}
        if {k: v for k, v in saved.items() if k not in may_change} != fixed:
            return False
    write_json(path, config)
    return True
