"""The zoo page of the report, rendered from what ``latentcode zoo`` wrote: ``zoo.json`` (the
runs, the per-label summary, the table's columns and the figures' file names) and the figures
beside it, with a link to each run's own concealment report. It reads files only, so the page
can be rebuilt without the trainer. The same safety as the detection report: autoescaped,
images inlined, and a Content Security Policy that admits only its own script."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..jsonl import atomic_open
from .html import render_page


def render_zoo(folder: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the page for the zoo in ``folder`` (default: ``folder/report/zoo.html``)."""
    folder = Path(folder)
    data = json.loads((folder / "zoo.json").read_text(encoding="utf-8"))
    rows, summary = data["runs"], data["summary"]
    images = {name: (folder / file).read_bytes() for name, file in data["figures"].items()}
    path = Path(path) if path is not None else folder / "report" / "zoo.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    links = {}
    for r in rows:
        report = Path(r["folder"]) / "concealment" / "report" / "report.html"
        if report.is_file():
            links[(r["label"], r["seed"])] = os.path.relpath(report, path.parent)
    html = render_page("zoo_template.html", images, rows=rows, summary=summary,
                       metrics=data["metrics"], links=links)
    with atomic_open(path) as f:
        f.write(html)
    return path
