"""The report's figures (matplotlib, Agg): ROC curves, capacity vs detectability, AUROC heatmaps.

Each function returns PNG bytes, so the same image is written to disk and embedded in the page.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .inputs import ScoredSet
from .metrics import full_roc

DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _colours(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def roc_figure(scored: ScoredSet, metrics: dict) -> bytes:
    """All detectors on one ROC, and the same curves on a log FPR axis for the low-FPR region."""
    labels = np.array(scored.labels())
    fig, (lin, log) = plt.subplots(1, 2, figsize=(11, 4.8))
    n_neg = int((labels == 0).sum())
    for det, colour in zip(scored.detectors, _colours(len(scored.detectors)), strict=True):
        fpr, tpr, _ = full_roc(labels, np.array(scored.scores(det)))
        label = f"{det} ({metrics['detectors'][det]['auroc']:.3f})"
        lin.plot(fpr, tpr, color=colour, lw=1.6, label=label, drawstyle="steps-post")
        floor = 0.5 / n_neg  # where FPR = 0 is drawn on the log axis
        log.plot(np.maximum(fpr, floor), tpr, color=colour, lw=1.6, drawstyle="steps-post")
    for ax in (lin, log):
        ax.set_xlabel("false positive rate (clean flagged)")
        ax.set_ylabel("true positive rate (payload caught)")
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.01, 1.01)
    lin.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    lin.set_xlim(-0.01, 1.01)
    lin.set_title("ROC (AUROC in legend)")
    lin.legend(loc="lower right", fontsize=8)
    grid = np.logspace(np.log10(0.5 / n_neg), 0, 200)
    log.plot(grid, grid, color="grey", ls=":", lw=1)
    log.set_xscale("log")
    log.set_xlim(0.5 / n_neg, 1)
    for f in (0.01, 0.05):
        log.axvline(f, color="black", lw=0.8, ls="--", alpha=0.5)
    log.set_title(f"low-FPR region (log scale; FPR 0 drawn at {0.5 / n_neg:.1g})")
    return _png(fig)


def capacity_figure(metrics: dict) -> bytes:
    """Bits/token against the best detector's AUROC, one point per payload source."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    rows = [r for r in metrics["capacity"] if r["bits_per_token"] is not None]
    for row, colour in zip(rows, _colours(len(rows)), strict=True):
        low, high = row["auroc_ci95"]
        ax.errorbar(row["bits_per_token"], row["auroc"], yerr=[[row["auroc"] - low],
                    [high - row["auroc"]]], fmt="o", color=colour, capsize=3)
        ax.annotate(f"{row['source']}\n({row['best_detector']})",
                    (row["bits_per_token"], row["auroc"]), textcoords="offset points",
                    xytext=(6, -4), fontsize=8)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("hidden bits per token")
    ax.set_ylabel("best AUROC (95% CI)")
    ax.set_ylim(min(0.4, *(r["auroc_ci95"][0] - 0.02 for r in rows)) if rows else 0.4, 1.02)
    ax.set_xlim(0, max((r["bits_per_token"] for r in rows), default=1.0) * 1.3 + 0.1)  # room for labels
    ax.grid(alpha=0.3)
    unknown = [r["source"] for r in metrics["capacity"] if r["bits_per_token"] is None]
    title = "capacity vs detectability"
    if unknown:
        title += f"\n(no bits/token for: {', '.join(unknown)})"
    ax.set_title(title)
    return _png(fig)


def source_heatmap(metrics: dict) -> bytes:
    """AUROC of every detector against every payload source."""
    detectors = list(metrics["detectors"])
    sources = list(metrics["sources"])
    grid = np.array([[metrics["sources"][s]["detectors"][d]["auroc"] for s in sources]
                     for d in detectors])
    return auroc_grid(grid, detectors, sources,
                      "AUROC per source (positives of the source vs all clean)")


def auroc_grid(grid: np.ndarray, rows: list[str], columns: list[str], title: str) -> bytes:
    """A table of AUROCs as a heatmap, each cell written in (blank where not measured)."""
    grid = np.asarray(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(columns), 0.9 + 0.42 * len(rows)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)
