"""The zoo page of the report: the regime table, the zoo's figures, and a link to each run's
own concealment report. The same safety as the detection report: autoescaped, images inlined,
and a Content Security Policy that admits only its own script."""

from __future__ import annotations

import os
from pathlib import Path

from ..jsonl import atomic_open
from .html import render_page


def render_zoo(rows: list[dict], summary: list[dict], images: dict[str, bytes],
               path: str | os.PathLike) -> Path:
    from ..channel.zoo import TABLE_METRICS

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    links = {}
    for r in rows:
        report = Path(r["folder"]) / "concealment" / "report" / "report.html"
        if report.is_file():
            links[(r["label"], r["seed"])] = os.path.relpath(report, path.parent)
    html = render_page("zoo_template.html", images, rows=rows, summary=summary,
                       metrics=TABLE_METRICS, links=links)
    with atomic_open(path) as f:
        f.write(html)
    return path
