"""The paper's questions, tested on a zoo's runs: intervals across seeds and the predictions.

A zoo row (``zoo.collect``) is one run. Here rows become what the questions need:

- **Bands.** Per label and response position, the mean over seeds and a 95% t interval
  (``seed_bands``), drawn as a band around each curve of the position figures.
- **The discount.** With gamma < 1 the decoding reward reaches the first tokens less, so the
  code should sit later: the half-accuracy token should fall as gamma rises, and so should the
  KL's centre of mass over positions (``kl_centroid``). ``trend_test`` gives Spearman's rho
  between gamma and each, over every rl run (seeds pooled), with a one-sided permutation
  p-value (gammas shuffled across runs). Runs where no code formed have no half-accuracy
  token: they are counted, and left out of that test.
- **The out-token.** Decoding on marked held-out episodes (feedback never applied) beside
  unmarked ones, per seed, with the paired difference's interval.
- **Conditioning and distillation.** Each arm's accuracy and best detector AUROC against the
  rl arm at gamma 1 (the distilled student's teacher), as a difference of means with a
  two-sided permutation p-value (seeds as the units).

Small numbers of seeds give wide intervals and coarse p-values (three runs per arm allow a
smallest two-sided p of 0.1): the functions report them as they are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr, t


def t_band(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None]:
    """Mean and a 95% t interval of the non-missing values, over seeds (no interval from a
    single value)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    half = t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def seed_bands(rows: list[dict], key: str) -> list[dict]:
    """Per label, ``{label, key, key_low, key_high, chance}``: the per-position mean over the
    label's seeds and its 95% t interval (None where fewer than two seeds measured it)."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        curves = [r[key] for r in rows if r["label"] == label]
        width = max((len(c) for c in curves), default=0)
        mean, low, high = [], [], []
        for k in range(width):
            m, lo, hi = t_band([c[k] for c in curves if k < len(c)])
            mean.append(m)
            low.append(lo)
            high.append(hi)
        first = next(r for r in rows if r["label"] == label)
        out.append({"label": label, key: mean, f"{key}_low": low, f"{key}_high": high,
                    "chance": first.get("chance")})
    return out


def kl_centroid(position_kl: Sequence[float | None]) -> float | None:
    """The KL-weighted mean response position (1-based): where the policy moved, on average."""
    kl = np.array([0.0 if v is None else max(0.0, v) for v in position_kl], dtype=float)
    if kl.sum() <= 0:
        return None
    return float((np.arange(1, len(kl) + 1) * kl).sum() / kl.sum())


def trend_test(x: Sequence[float], y: Sequence[float], *, alternative: str = "less",
               permutations: int = 10_000, seed: int = 0) -> dict:
    """Spearman's rho of ``y`` against ``x`` and a permutation p-value for it.

    ``alternative``: ``less`` (the prediction is rho < 0), ``greater`` or ``two-sided``. With
    few runs every distinct permutation is counted exactly; otherwise ``permutations`` random
    ones (the observed ordering included, so p is never 0)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} x values but {len(y)} y values")
    if alternative not in ("less", "greater", "two-sided"):
        raise ValueError(f"alternative must be less, greater or two-sided, got {alternative!r}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p": None, "n": len(x)}

    def rho(order) -> float:
        return float(spearmanr(x[list(order)], y).statistic)

    observed = rho(range(len(x)))
    if math.factorial(len(x)) <= permutations:
        null = np.array([rho(p) for p in itertools.permutations(range(len(x)))])
    else:
        rng = np.random.default_rng(seed)
        null = np.array([observed] + [rho(rng.permutation(len(x))) for _ in range(permutations - 1)])
    eps = 1e-12
    if alternative == "less":
        p = float(np.mean(null <= observed + eps))
    elif alternative == "greater":
        p = float(np.mean(null >= observed - eps))
    else:
        p = float(np.mean(np.abs(null) >= abs(observed) - eps))
    return {"rho": observed, "p": p, "n": len(x)}


def difference(a: Sequence[float | None], b: Sequence[float | None], *,
               permutations: int = 10_000, seed: int = 0) -> dict:
    """mean(a) - mean(b), its 95% Welch interval and a two-sided permutation p-value (the
    runs' arm labels shuffled; exact when few)."""
    a = np.array([v for v in a if v is not None], dtype=float)
    b = np.array([v for v in b if v is not None], dtype=float)
    out = {"diff": None, "low": None, "high": None, "p": None, "n_a": len(a), "n_b": len(b)}
    if not len(a) or not len(b):
        return out
    out["diff"] = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se > 0:
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(t.ppf(0.975, dof) * se)
        out["low"], out["high"] = out["diff"] - half, out["diff"] + half
    pooled, n = np.r_[a, b], len(a)
    observed = abs(out["diff"])
    if math.comb(len(pooled), n) <= permutations:
        splits = [list(s) for s in itertools.combinations(range(len(pooled)), n)]
    else:
        rng = np.random.default_rng(seed)
        splits = [list(range(n))] + [list(rng.permutation(len(pooled))[:n])
                                     for _ in range(permutations - 1)]
    stats = []
    for s in splits:
        mask = np.zeros(len(pooled), dtype=bool)
        mask[s] = True
        stats.append(abs(pooled[mask].mean() - pooled[~mask].mean()))
    out["p"] = float(np.mean(np.array(stats) >= observed - 1e-12))
    return out


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(m, lo, hi, digits: int = 3) -> str:
    if m is None:
        return "-"
    return _fmt(m, digits) + ("" if lo is None else f" ({_fmt(lo, digits)} to {_fmt(hi, digits)})")


def discount_section(rows: list[dict]) -> tuple[list[str], dict]:
    """The gamma prediction: per gamma the half-accuracy token and KL centroid across seeds,
    and the trend tests over every rl run."""
    rl = [r for r in rows if r["regime"] == "rl" and r.get("gamma") is not None]
    lines = ["## The discount: does the code move later as gamma falls?", ""]
    if len({r["gamma"] for r in rl}) < 2:
        return lines + ["Fewer than two gammas among the rl runs: nothing to test.", ""], {}
    lines += ["| gamma | runs | runs with a code | half-accuracy token | KL centroid (position) |",
              "|---:|---:|---:|---|---|"]
    for gamma in sorted({r["gamma"] for r in rl}, reverse=True):
        mine = [r for r in rl if r["gamma"] == gamma]
        halves = [r["half_position"] for r in mine]
        lines.append(f"| {gamma:g} | {len(mine)} | {sum(h is not None for h in halves)} | "
                     f"{_interval(*t_band(halves), 1)} | "
                     f"{_interval(*t_band([kl_centroid(r['position_kl']) for r in mine]), 1)} |")
    formed = [r for r in rl if r["half_position"] is not None]
    half = trend_test([r["gamma"] for r in formed], [r["half_position"] for r in formed])
    centred = [(r["gamma"], kl_centroid(r["position_kl"])) for r in rl]
    centred = [(g, c) for g, c in centred if c is not None]
    centroid = trend_test([g for g, _ in centred], [c for _, c in centred])
    lines += ["", ("Prediction: both fall as gamma rises (Spearman's rho < 0; one-sided "
              "permutation p over the runs, gammas shuffled)."), "",
              (f"- half-accuracy token against gamma: rho {_fmt(half['rho'], 2)}, "
              f"p {_fmt(half['p'])}, over {half['n']} runs with a code "
              f"({len(rl) - len(formed)} of {len(rl)} rl runs formed none)"),
              (f"- KL centroid against gamma: rho {_fmt(centroid['rho'], 2)}, "
              f"p {_fmt(centroid['p'])}, over {centroid['n']} runs"), ""]
    return lines, {"half_position": half, "kl_centroid": centroid}


def out_token_section(rows: list[dict]) -> tuple[list[str], dict]:
    """Decoding on unmarked and marked held-out episodes, per out-token label."""
    lines = ["## The out-token: does behaviour learned under feedback show where none applies?", ""]
    labels = list(dict.fromkeys(r["label"] for r in rows if r.get("accuracy_marked") is not None))
    if not labels:
        return lines + ["No run evaluated marked episodes.", ""], {}
    lines += ["| label | seeds | unmarked accuracy | marked accuracy | marked - unmarked (paired) |",
              "|---|---:|---|---|---|"]
    found = {}
    for label in labels:
        mine = [r for r in rows if r["label"] == label and r.get("accuracy_marked") is not None]
        gaps = [r["accuracy_marked"] - r["accuracy"] for r in mine]
        found[label] = {"unmarked": t_band([r["accuracy"] for r in mine]),
                        "marked": t_band([r["accuracy_marked"] for r in mine]),
                        "gap": t_band(gaps)}
        lines.append(f"| {label} | {len(mine)} | {_interval(*found[label]['unmarked'])} | "
                     f"{_interval(*found[label]['marked'])} | {_interval(*found[label]['gap'])} |")
    return lines + [""], found


def arms_section(rows: list[dict]) -> tuple[list[str], dict]:
    """Every non-rl arm against rl at gamma 1: accuracy and best detector AUROC."""
    lines = ["## Conditioning, preference learning and distillation against RL (gamma 1)", ""]
    base = [r for r in rows if r["regime"] == "rl" and r.get("gamma") == 1.0]
    others = list(dict.fromkeys(r["label"] for r in rows if r["regime"] != "rl"))
    if not base or not others:
        return lines + ["No rl run at gamma 1, or no other arm, to compare.", ""], {}
    lines += [("| label | regime | seeds | accuracy - rl's (95% CI, p) | "
              "best detector AUROC - rl's (95% CI, p) |"), "|---|---|---:|---|---|"]
    found = {}
    for label in others:
        mine = [r for r in rows if r["label"] == label]
        acc = difference([r["accuracy"] for r in mine], [r["accuracy"] for r in base])
        det = difference([r["best_auroc"] for r in mine], [r["best_auroc"] for r in base])
        found[label] = {"accuracy": acc, "best_auroc": det}
        cells = [f"{_interval(d['diff'], d['low'], d['high'])}, p {_fmt(d['p'])}"
                 for d in (acc, det)]
        lines.append(f"| {label} | {mine[0]['regime']} | {len(mine)} | {cells[0]} | {cells[1]} |")
    return lines + [""], found


def questions(rows: list[dict]) -> tuple[str, dict]:
    """The markdown sections for ``zoo.md`` and their numbers for ``zoo.json``."""
    text, numbers = [], {}
    for name, section in (("discount", discount_section), ("out_token", out_token_section),
                          ("arms", arms_section)):
        lines, found = section(rows)
        text += lines
        numbers[name] = found
    return "\n".join(text), numbers
