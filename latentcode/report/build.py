"""`latentcode report`: scored transcripts in, one folder out (page, metrics.json, figures).

The folder is built beside its destination and renamed into place, so a reader never sees a
half-written report, and a failed run leaves the previous report untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..jsonl import atomic_dir, write_json
from .analysis import analyse
from .html import render
from .inputs import ReportInputError, load_scored
from .plots import capacity_figure, roc_figure, source_heatmap

FIGURES = {"roc": "roc.png", "sources": "auroc_per_source.png", "capacity": "capacity.png"}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_compare(path: str | os.PathLike) -> dict:
    """Read another report's metrics.json (plain JSON; nothing is executed or unpickled)."""
    try:
        other = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportInputError(f"{path}: --compare file not found; pass another report's "
                               "metrics.json") from None
    except json.JSONDecodeError as err:
        raise ReportInputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(other, dict) or not isinstance(other.get("detectors"), dict):
        raise ReportInputError(f"{path}: not a latentcode metrics.json (no 'detectors' object)")
    return other


def compare_rows(this: dict, other: dict) -> list[dict]:
    """One row per detector in either run; missing sides are None."""
    rows = []
    for det in list(this["detectors"]) + [d for d in other["detectors"] if d not in this["detectors"]]:
        a, b = this["detectors"].get(det), other["detectors"].get(det)

        def pick(cell, key):
            if cell is None:
                return None
            return cell["auroc"] if key == "auroc" else cell["tpr_at_fpr"]["0.01"]["tpr"]

        row = {"detector": det}
        for key, short in (("auroc", "auroc"), ("tpr1", "tpr1")):
            x, y = pick(a, key), pick(b, key)
            row[f"{short}_this"], row[f"{short}_other"] = x, y
            row[f"{short}_delta"] = None if x is None or y is None else x - y
        rows.append(row)
    return rows


def build_report(inputs: list[str | os.PathLike], out: str | os.PathLike, *,
                 compare: str | os.PathLike | None = None, n_boot: int = 2000, seed: int = 0,
                 n_examples: int = 3) -> Path:
    """Write report.html, metrics.json and the PNG figures into ``out``; return its path."""
    scored = load_scored(inputs)
    other = load_compare(compare) if compare else None
    metrics = analyse(scored, n_boot=n_boot, seed=seed, n_examples=n_examples)
    metrics["inputs"] = [{"path": f, "sha256": _sha256(f)} for f in scored.files]
    compare_block = None
    if other is not None:
        compare_block = {"path": str(compare), "rows": compare_rows(metrics, other)}
        metrics["compare"] = compare_block
    images = {"roc": roc_figure(scored, metrics), "sources": source_heatmap(metrics),
              "capacity": capacity_figure(metrics)}
    page = render(metrics, images, files=scored.files, compare=compare_block)

    out = Path(out)
    if out.exists() and not (out / "metrics.json").is_file() and any(out.iterdir()):
        raise ReportInputError(f"{out} exists and is not a report folder; choose another --out")
    with atomic_dir(out) as staging:
        for key, name in FIGURES.items():
            (staging / name).write_bytes(images[key])
        write_json(staging / "metrics.json", metrics)
        (staging / "report.html").write_text(page, encoding="utf-8")
    return out

