"""The arms-race page of the report, rendered from what ``latentcode arms-race`` wrote:
``arms.json`` (senders, matrices, headline, figure names) and the heatmaps beside it. It reads
files only, with the report's safety: autoescaped, images inlined, a strict CSP."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..jsonl import atomic_open
from .html import render_page


def render_arms(folder: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the page for the arms race in ``folder`` (default: ``folder/report/arms.html``)."""
    folder = Path(folder)
    data = json.loads((folder / "arms.json").read_text(encoding="utf-8"))
    images = {side: (folder / file).read_bytes() for side, file in data["figures"].items()}
    path = Path(path) if path is not None else folder / "report" / "arms.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_page("arms_template.html", images, runs=data["runs"], matrix=data["matrix"],
                       detectors=data["detectors"], headline=data["headline"],
                       trained_against=data["trained_against"], control=data["control"],
                       cells=data["cells"])
    with atomic_open(path) as f:
        f.write(html)
    return path
