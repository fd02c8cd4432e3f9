"""The zoo page of the report: the regime table, the zoo's figures, and a link to each run's
own concealment report. The same safety as the detection report: autoescaped, images inlined,
and a Content Security Policy that admits only its own script."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..jsonl import atomic_open
from .html import SCRIPT, _num, _version


def render_zoo(rows: list[dict], summary: list[dict], images: dict[str, bytes],
               path: str | os.PathLike) -> Path:
    from ..channel.zoo import TABLE_METRICS

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    links = {}
    for r in rows:
        report = Path(r["folder"]) / "concealment" / "report" / "report.html"
        if report.is_file():
            links[(r["label"], r["seed"])] = os.path.relpath(report, path.parent)
    html = env.get_template("zoo_template.html").render(
        rows=rows, summary=summary, metrics=TABLE_METRICS, links=links,
        images={k: base64.b64encode(v).decode() for k, v in images.items()},
        script=SCRIPT, script_hash=f"sha256-{digest}", num=_num,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), version=_version())
    with atomic_open(path) as f:
        f.write(html)
    return path
