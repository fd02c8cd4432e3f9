"""The figures of a run: the learning curve a user looks at first (decoding, overseer flags,
reward and KL per step), and curves over response positions (where a code is readable, where
the policy moved), one line per run so regimes compare on one figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..jsonl import atomic_open


def _smooth(values: list[float], window: int = 5) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.r_[np.full(window - 1, values[0]), values]
    return np.convolve(padded, kernel, mode="valid")


def plot_learning_curve(metrics: list[dict], evals: list[dict], path: Path) -> None:
    steps = [m["step"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.plot(steps, [m["accuracy"] for m in metrics], alpha=0.3, color="C0")
    ax.plot(steps, _smooth([m["accuracy"] for m in metrics]), color="C0", label="train batch (5-step mean)")
    if evals:
        ax.plot([e["step"] for e in evals], [e["accuracy"] for e in evals], "o-", color="C3",
                label="held-out prompts")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0, 1.02)
    ax.set_title("decoding accuracy")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = sorted({k for m in metrics for k in m if k.startswith("flagged/")})
    for i, name in enumerate(names):
        ax.plot(steps, _smooth([m.get(name, np.nan) for m in metrics]), color=f"C{i}",
                label=name.split("/", 1)[1])
        if evals:
            ax.plot([e["step"] for e in evals], [e.get(name, np.nan) for e in evals], "o",
                    color=f"C{i}", ms=4)
    ax.plot(steps, [m["lambda"] for m in metrics], color="black", ls="--", lw=1, label="lambda")
    ax.set_title("overseer flag rate (dots: held out)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(steps, _smooth([m["reward"] for m in metrics]), color="C2", label="reward")
    twin = ax.twinx()
    # not every regime measures these per step (SFT-style regimes have no KL term)
    twin.plot(steps, [m.get("kl_per_response", np.nan) for m in metrics], color="C4",
              label="KL / response")
    twin.plot(steps, [m.get("entropy", np.nan) for m in metrics], color="C5", ls=":",
              label="entropy / token")
    ax.set_title("reward (left), KL and entropy in nats (right)")
    ax.set_xlabel("step")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = twin.get_legend_handles_labels()
    twin.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="center right")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def run_label(result: dict) -> str:
    label = result.get("label") or result.get("regime", "run")
    if result.get("regime") in ("rl", "rl-out-token") and "gamma" in result and "label" not in result:
        label += f" (gamma {result['gamma']:g})"
    return label


def plot_position_curves(results: list[dict], path: Path, key: str, ylabel: str,
                         dashed: str | None = None, dashed_label: str = "") -> None:
    """``result[key]`` (one value per response position, None where unmeasured) for each run;
    ``result[dashed]``, when given and present, drawn dashed in the same colour; with
    ``result[key + "_low"]`` and ``_high`` (an interval across seeds), a band around the line."""
    fig, ax = plt.subplots(figsize=(7, 4))

    def array(values) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    for i, result in enumerate(results):
        values = array(result[key])
        ax.plot(np.arange(1, len(values) + 1), values, "-", color=f"C{i % 10}",
                label=run_label(result))
        if result.get(f"{key}_low"):
            ax.fill_between(np.arange(1, len(values) + 1), array(result[f"{key}_low"]),
                            array(result[f"{key}_high"]), color=f"C{i % 10}", alpha=0.15, lw=0)
        if dashed and result.get(dashed):
            more = array(result[dashed])
            ax.plot(np.arange(1, len(more) + 1), more, "--", color=f"C{i % 10}", lw=1,
                    label=dashed_label if i == 0 else None)
    if key == "prefix_accuracy" and results:
        ax.axhline(results[0].get("chance", 0.5), color="grey", ls=":", lw=1, label="chance")
        ax.set_ylim(0, 1.02)
    ax.set_xlabel("response tokens read (k)" if key == "prefix_accuracy" else "response position")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
