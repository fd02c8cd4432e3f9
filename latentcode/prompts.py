"""Cover prompts: what the model is asked before it writes (clean or carrying a payload)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .jsonl import LineError, RecordError, iter_json_objects

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROMPTS = REPO_ROOT / "datasets" / "prompts" / "cover.jsonl"


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    category: str | None = None


def read_prompts(path: str | os.PathLike = DEFAULT_PROMPTS) -> list[Prompt]:
    """JSONL with ``prompt`` (and optional ``id``, ``category``), or a ``.txt`` with one per line.

    Raises :class:`RecordError` listing every malformed line.
    """
    path = Path(path)
    if path.suffix == ".txt" and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Prompt(f"{path.stem}-{i}", s.strip()) for i, s in enumerate(lines, 1) if s.strip()]
    prompts: list[Prompt] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for lineno, obj in iter_json_objects(path):
        if isinstance(obj, LineError):
            errors.append(obj)
            continue
        text, pid, category = obj.get("prompt"), obj.get("id", f"{path.stem}-{lineno}"), obj.get("category")
        if not isinstance(text, str) or not text.strip():
            errors.append(LineError(str(path), lineno, "prompt", "must be a non-empty string"))
            continue
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) in seen:
            errors.append(LineError(str(path), lineno, "id", f"must be a unique string, got {pid!r}"))
            continue
        seen.add(str(pid))
        prompts.append(Prompt(str(pid), text, category if isinstance(category, str) else None))
    if not prompts and not errors:
        errors.append(LineError(str(path), 0, "(file)", "contains no prompts"))
    if errors:
        raise RecordError(errors, what="prompts")
    return prompts


def split_by_prompt(prompts: Sequence[Prompt], seed: int = 0) -> dict[str, list[Prompt]]:
    """Two disjoint halves of the prompts, ``train`` and ``test``: fit detectors on text written
    for one half and score text written for the other, so no test prompt was seen in fitting."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(prompts))
    half = len(prompts) // 2
    return {"train": [prompts[i] for i in order[:half]], "test": [prompts[i] for i in order[half:]]}
