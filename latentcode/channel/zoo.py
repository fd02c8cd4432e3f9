"""``latentcode zoo``: every listed training regime on one task under one budget, over seeds.

A zoo config (``configs/zoo.toml``) names a base training config, the seeds, overrides shared
by every run, and the runs: a label, a regime and that run's own overrides. Every run gets the
same budget of steps, episodes per step and samples per episode (a run may not override
them), so each regime spends the same number of sampled responses and reward calls. Runs go
into ``out/runs/{label}-s{seed}``, one after another; a finished run (its
``instrumentality.json`` written) is skipped and an interrupted one resumes from its
checkpoint. ``distill.teacher = "@label"`` points a distillation run at the same seed's run
of that label, which must come earlier in the list.

The zoo writes ``zoo.csv`` (one row per run), ``zoo.md`` (mean and 95% interval per label),
``zoo.json``, the figures (held-out learning curves, prefix decodability and per-position KL,
one line per label) and ``report/zoo.html``, a page linking every run's concealment report.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..jsonl import atomic_open, write_json
from .config import REGIME_NAMES, ConfigError, TrainConfig, load_config
from .runlog import flag_rates
from .zoo_questions import questions, seed_bands
from .zoo_questions import t_band as mean_ci  # mean and 95% t interval over seeds

BUDGET_KEYS = ("rl.steps", "rl.prompts_per_step", "rl.group_size")


@dataclass
class ZooRun:
    label: str
    regime: str
    overrides: dict = field(default_factory=dict)


@dataclass
class ZooConfig:
    base: str  # a training config (TOML); empty: the defaults
    seeds: list[int]
    shared: dict  # overrides applied to every run
    runs: list[ZooRun]

    def to_dict(self) -> dict:
        return {"base": self.base, "seeds": self.seeds, "set": self.shared,
                "runs": [{"label": r.label, "regime": r.regime, "set": r.overrides}
                         for r in self.runs]}


def read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def load_zoo(path: str | Path) -> ZooConfig:
    """Read and check a zoo config: every problem named with its key."""
    path = Path(path)
    return parse_zoo(read_toml(path, "zoo config"), path)


def parse_zoo(data: dict, path: Path) -> ZooConfig:
    """A zoo from a config's tables (``path`` for messages and relative paths)."""
    unknown = sorted(set(data) - {"base", "seeds", "set", "run"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; allowed: base, seeds, set, [[run]]")
    base = data.get("base", "")
    if base and not Path(base).is_absolute():
        base = str((path.parent / base).resolve())
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds: must be a non-empty list of integers, got {seeds!r}")
    runs, labels = [], []
    for i, entry in enumerate(data.get("run", [])):
        where = f"{path}: run {i + 1}"
        extra = sorted(set(entry) - {"label", "regime", "set"})
        if extra:
            raise ConfigError(f"{where}: {extra[0]}: unknown key; allowed: label, regime, set")
        regime = entry.get("regime")
        if regime not in REGIME_NAMES:
            raise ConfigError(f"{where}: regime: {regime!r} is not one of {', '.join(REGIME_NAMES)}")
        label = entry.get("label", regime)
        if label in labels:
            raise ConfigError(f"{where}: label {label!r} is used twice")
        overrides = dict(entry.get("set", {}))
        budget = [k for k in overrides if k in BUDGET_KEYS]
        if budget:
            raise ConfigError(f"{where}: {budget[0]}: every run has the same budget; set it in "
                              "the top-level [set] table")
        teacher = overrides.get("distill.teacher", "")
        if isinstance(teacher, str) and teacher.startswith("@") and teacher[1:] not in labels:
            raise ConfigError(f"{where}: distill.teacher {teacher!r} names no earlier run")
        labels.append(label)
        runs.append(ZooRun(label, regime, overrides))
    if not runs:
        raise ConfigError(f"{path}: no [[run]] entries")
    zoo = ZooConfig(base, seeds, dict(data.get("set", {})), runs)
    for run in runs:  # every run's training config must load: fail now, not an hour in
        run_config(zoo, run, seeds[0], Path("/nonexistent"))
    return zoo


def run_folder(out: Path, label: str, seed: int) -> Path:
    return out / "runs" / f"{label}-s{seed}"


def run_config(zoo: ZooConfig, run: ZooRun, seed: int, out: Path) -> TrainConfig:
    overrides = {**zoo.shared, **run.overrides, "regime": run.regime, "seed": seed}
    teacher = overrides.get("distill.teacher", "")
    if isinstance(teacher, str) and teacher.startswith("@"):
        overrides["distill.teacher"] = str(run_folder(out, teacher[1:], seed))
    try:
        return load_config(zoo.base or None, overrides)
    except ConfigError as err:
        raise ConfigError(f"zoo run {run.label!r}: {err}") from None


def run_zoo(zoo: ZooConfig, out: str | Path, *, progress: bool = True, log=print) -> list[dict]:
    """Train and measure every run (resuming), then write the tables, figures and page."""
    from ..jsonl import claim_folder

    out = Path(out)
    if not claim_folder(out, zoo.to_dict()):
        raise ConfigError(f"{out} holds a zoo with another config; choose another --out or "
                          "delete the folder")
    train_runs(zoo, out, progress=progress, log=log)
    rows = [collect(run_folder(out, run.label, seed), run.label)
            for seed in zoo.seeds for run in zoo.runs]
    write_outputs(rows, out)
    log(f"wrote {out / 'zoo.md'}, {out / 'zoo.csv'} and {out / 'report' / 'zoo.html'}")
    return rows


def train_runs(zoo: ZooConfig, out: Path, *, progress: bool = True, log=print) -> None:
    """Train and measure every run of the zoo in turn, skipping finished ones and resuming an
    interrupted one."""
    from .trainer import train

    total = len(zoo.runs) * len(zoo.seeds)
    done = 0
    for seed in zoo.seeds:
        for run in zoo.runs:
            done += 1
            folder = run_folder(out, run.label, seed)
            if (folder / "instrumentality.json").is_file():
                log(f"[{done}/{total}] {run.label} seed {seed}: [resume] finished")
                continue
            cfg = run_config(zoo, run, seed, out)
            cfg.measure.enabled = True
            log(f"[{done}/{total}] {run.label} seed {seed}: regime {run.regime}, "
                f"{cfg.rl.steps} steps x {cfg.rl.prompts_per_step} x {cfg.rl.group_size} samples")
            train(cfg, folder, progress=progress)


def _flag_rate(final: dict) -> tuple[str | None, float | None]:
    """The LLM overseer's held-out flag rate when it watched, else the first overseer's."""
    flags = flag_rates(final)
    if not flags:
        return None, None
    name = "overseer" if "overseer" in flags else min(flags)
    return name, flags[name]


def collect(folder: Path, label: str) -> dict:
    """One run's row: what the zoo table and figures need, read from its folder."""
    summary = json.loads((folder / "summary.json").read_text())
    measured = json.loads((folder / "instrumentality.json").read_text())
    evals = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()
             if line.strip()]
    final = summary["final_eval"] or {}
    overseer, flag_rate = _flag_rate(final)
    kl = [v for v in measured["position_kl"] if v is not None]
    return {
        "label": label, "regime": measured["regime"], "seed": measured["seed"],
        "gamma": measured["gamma"], "steps": summary["steps"], "n_eval": measured["n"],
        "accuracy": final.get("accuracy"),
        "accuracy_marked": final.get("accuracy/marked"),  # rl-out-token: never-rewarded episodes
        "bits": measured["capacity"]["bits"],
        "bits_ci_low": measured["capacity"]["ci_low"],
        "bits_ci_high": measured["capacity"]["ci_high"],
        "overseer": overseer, "flag_rate": flag_rate, "kl_per_response": float(sum(kl)),
        "best_detector": measured.get("best_detector"), "best_auroc": measured.get("best_auroc"),
        "half_position": measured["half_position"],
        "train_minutes": round(summary["seconds"] / 60, 2),
        "curve": [(e["step"], e["accuracy"]) for e in evals],
        "prefix_accuracy": measured["prefix_accuracy"],
        "prefix_truth_prob": measured.get("prefix_truth_prob", []),
        "position_kl": measured["position_kl"],
        "chance": measured["chance"], "folder": str(folder),
    }


CSV_COLUMNS = ["label", "regime", "seed", "gamma", "steps", "n_eval", "accuracy",
               "accuracy_marked", "bits",
               "bits_ci_low", "bits_ci_high", "overseer", "flag_rate", "kl_per_response",
               "best_detector", "best_auroc", "half_position", "train_minutes"]
TABLE_METRICS = [("accuracy", "decoding accuracy"), ("bits", "bits / response"),
                 ("flag_rate", "overseer flag rate"), ("kl_per_response", "KL / response (nats)"),
                 ("best_auroc", "best detector AUROC"), ("half_position", "half-accuracy token")]


def wilson(p: float, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(round(p * n), n).proportion_ci(method="wilson")
    return float(ci.low), float(ci.high)


def summarize(rows: list[dict]) -> list[dict]:
    """Per label: mean and 95% interval of each table metric over seeds. With one seed the
    interval is the run's own: Wilson for accuracy and flag rate, bootstrap for bits."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        entry = {"label": label, "regime": mine[0]["regime"], "gamma": mine[0]["gamma"],
                 "seeds": len(mine),
                 "best_detector": max(mine, key=lambda r: r["best_auroc"] or 0)["best_detector"]}
        for key, _ in TABLE_METRICS:
            mean, low, high = mean_ci([r[key] for r in mine])
            if len(mine) == 1 and mean is not None:
                r = mine[0]
                if key in ("accuracy", "flag_rate"):
                    low, high = wilson(mean, r["n_eval"])
                elif key == "bits":
                    low, high = r["bits_ci_low"], r["bits_ci_high"]
            entry[key] = {"mean": mean, "low": low, "high": high}
        out.append(entry)
    return out


def _cell(m: dict, digits: int) -> str:
    if m["mean"] is None:
        return "-"
    text = f"{m['mean']:.{digits}f}"
    if m["low"] is not None:
        text += f" ({m['low']:.{digits}f}-{m['high']:.{digits}f})"
    return text


def markdown_table(summary: list[dict]) -> str:
    header = ["label", "regime", "seeds", *(name for _, name in TABLE_METRICS), "best detector"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in summary:
        digits = {"half_position": 1, "kl_per_response": 2}
        cells = [_cell(e[key], digits.get(key, 3)) for key, _ in TABLE_METRICS]
        lines.append("| " + " | ".join([e["label"], e["regime"], str(e["seeds"]), *cells,
                                        e["best_detector"] or "-"]) + " |")
    return "\n".join(lines)


def plot_learning_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, label in enumerate(dict.fromkeys(r["label"] for r in rows)):
        for j, r in enumerate(x for x in rows if x["label"] == label):
            steps, acc = zip(*r["curve"], strict=True)
            ax.plot(steps, acc, "o-", color=f"C{i % 10}", ms=3, alpha=0.9 if j == 0 else 0.5,
                    label=label if j == 0 else None)
    ax.axhline(rows[0]["chance"], color="grey", ls=":", lw=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out decoding accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def write_outputs(rows: list[dict], out: Path) -> list[dict]:
    import csv
    import io

    from ..report.zoo import render_zoo
    from .curves import plot_position_curves

    summary = summarize(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(out / "zoo.csv") as f:
        f.write(buffer.getvalue())
    table = markdown_table(summary)
    answers, numbers = questions(rows)
    with atomic_open(out / "zoo.md") as f:
        f.write(table + "\n\n" + answers)
    figures = {"learning_curves": "zoo-learning-curves.png",
               "prefix_decodability": "zoo-prefix-decodability.png",
               "position_kl": "zoo-position-kl.png"}
    plot_learning_curves(rows, out / figures["learning_curves"])
    curves = [{**a, **b} for a, b in zip(seed_bands(rows, "prefix_accuracy"),
                                         seed_bands(rows, "prefix_truth_prob"), strict=True)]
    plot_position_curves(curves, out / figures["prefix_decodability"], "prefix_accuracy",
                         "receiver accuracy on the first k tokens", dashed="prefix_truth_prob",
                         dashed_label="posterior of the true secret (dashed)")
    plot_position_curves(seed_bands(rows, "position_kl"), out / figures["position_kl"],
                         "position_kl", "KL(policy || reference) at position k, nats")
    # the page renders from this file alone (report/ never imports the zoo)
    write_json(out / "zoo.json", {"runs": rows, "summary": summary, "metrics": TABLE_METRICS,
                                  "figures": figures, "questions": numbers})
    render_zoo(out)
    return summary
