"""One self-contained, offline HTML page (jinja2, autoescaped; images inlined as data URIs).

Transcript text is untrusted: jinja2's autoescaping makes it inert, and the page's Content
Security Policy allows only our own inline script (by hash) and data: images, so even an
escaping slip could not run a script or fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

# Marks the page as loaded (and how many images decoded) and counts script errors, so a
# headless browser test can read both from the DOM; clicking a header sorts its table.
SCRIPT = """
const root = document.documentElement;
root.dataset.errors = "0";
window.addEventListener("error", () => { root.dataset.errors = String(Number(root.dataset.errors) + 1); });
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const ok = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  root.dataset.images = ok + "/" + images.length;
  root.dataset.loaded = "yes";
});
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const body = table.tBodies[0];
    const key = (tr) => { const t = tr.cells[col].textContent.trim(); const x = parseFloat(t);
                          return Number.isNaN(x) ? t : x; };
    const down = th.dataset.dir !== "down";
    th.dataset.dir = down ? "down" : "up";
    Array.from(body.rows).sort((a, b) => { const p = key(a), q = key(b);
      const c = typeof p === "number" && typeof q === "number" ? p - q : String(p).localeCompare(String(q));
      return down ? -c : c; }).forEach((tr) => body.appendChild(tr));
  }));
}
"""


def _version() -> str:
    try:
        return version("latentcode")
    except PackageNotFoundError:
        return "(not installed)"


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _thr(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def _sign(value) -> str:
    if value is None or value == 0:
        return ""
    return "delta-pos" if value > 0 else "delta-neg"


def _best_of(cells: dict) -> str:
    return max(cells, key=lambda d: cells[d]["auroc"])


def render_page(template: str, images: dict[str, bytes], **context) -> str:
    """One of this folder's pages (each extends ``page.html``), autoescaped, with the images
    inlined and what every page needs: the script, its CSP hash, the time and the version."""
    env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return env.get_template(template).render(
        images={k: base64.b64encode(v).decode() for k, v in images.items()},
        script=SCRIPT, script_hash=f"sha256-{digest}",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), version=_version(),
        num=_num, **context)


def render(metrics: dict, images: dict[str, bytes], *, files: list[str],
           compare: dict | None = None) -> str:
    return render_page("template.html", images, m=metrics, detectors=list(metrics["detectors"]),
                       files=files, compare=compare, best_overall=_best_of(metrics["detectors"]),
                       thr=_thr, sign=_sign, best_of=_best_of)
