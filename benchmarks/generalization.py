"""Generalisation to unseen codes: leave-one-scheme-out AUROC, and clean-text false positives.

Every source of :data:`latentcode.generalization.SOURCES` (the reference codecs, variants made
from their parameters, vocabulary bins, a position-restricted code, post-hoc edits, the zero-KL
codecs) is held out in turn: supervised detectors are fitted on clean text against every other
source (``--leave-out family``: every other family), unsupervised ones on clean text alone,
and each is scored on the held-out source against clean text on the same test prompts (the
clean side holds ``--clean-multiple`` samples of each). Prints the matrix (AUROC ± 95%
half-width, Hanley-McNeil), each source's bits per token and its best detector (a maximum over
detectors: optimistic by construction), and writes ``matrix.md``, ``results.json`` and
``matrix.png`` into ``--out``.

False positives: every detector fitted as deployed on the prompts of ``--fit-categories``
only, its threshold set to 5% on their clean test half, then the share of clean text it flags
from the other categories' prompts and, with ``--other-models DIR,...``, from other models on
the same prompts (sampled by the same null-codec pipeline; ``run:DIR`` is a trained run's
sender merged into its base model, a fine-tuned model where no other is on the machine). The model-based detectors read
text under the embedded model whatever wrote it: on another model's text they measure "not
written by this model", which the table shows.

Transcripts and measured cells are kept in ``--out``; a re-run resumes. Run by hand, alone:

    .venv/bin/python benchmarks/generalization.py --out runs/generalization
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from latentcode.battery import NULL, SUPERVISED, UNSUPERVISED, split_by_prompt
from latentcode.channel.measure import prompt_half
from latentcode.generalization import (
    SOURCES,
    false_positive_rates,
    leave_one_out,
    matrix_markdown,
    source_transcripts,
    zero_kl_check,
)
from latentcode.jsonl import atomic_open, write_json
from latentcode.lm import load_lm
from latentcode.prompts import read_prompts
from latentcode.transcripts import mean_bits_per_token

DEFAULT_FIT_CATEGORIES = "question,explanation,email,advice"


def other_model(spec: str, base: str | None):
    """A model for the false-positive columns: a folder or id, or ``run:DIR``, a trained run's
    sender merged into its base model (a fine-tuned SmolLM2, where no other model is here)."""
    if not spec.startswith("run:"):
        return load_lm(spec, dtype=torch.float64)
    from peft import PeftModel

    lm = load_lm(base, dtype=torch.float64)
    adapter = Path(spec[4:]) / "adapter"
    merged = PeftModel.from_pretrained(lm.model, str(adapter)).merge_and_unload()
    return dataclasses.replace(lm, model=merged.double(), name=f"{lm.name}+{Path(spec[4:]).name}")


def heatmap(results: dict, detectors: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results)
    grid = np.array([[results[h].get(d, {}).get("auroc", np.nan) for d in detectors] for h in rows])
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(detectors), 1 + 0.35 * len(rows)))
    im = ax.imshow(grid, vmin=0.3, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(detectors)), detectors, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(detectors)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.7 else "black")
    fig.colorbar(im, ax=ax, label="AUROC (held out)")
    ax.set_title("Leave-one-scheme-out AUROC")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/generalization")
    parser.add_argument("--n-train", type=int, default=64, help="transcripts per source, train")
    parser.add_argument("--n-test", type=int, default=64, help="transcripts per source, test")
    parser.add_argument("--clean-multiple", type=int, default=3,
                        help="clean samples per test prompt (and per train prompt)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--detectors", default=",".join(UNSUPERVISED + SUPERVISED))
    parser.add_argument("--leave-out", choices=["source", "family"], default="source")
    parser.add_argument("--fit-categories", default=DEFAULT_FIT_CATEGORIES,
                        help="prompt categories the false-positive detectors are fitted on")
    parser.add_argument("--other-models", default="",
                        help="comma-separated model folders or ids, or run:DIR (a trained sender)")
    parser.add_argument("--key", default="generalization-benchmark")
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", vars(args))
    lm = load_lm(args.model, dtype=torch.float64)
    halves = split_by_prompt(read_prompts())
    sources = args.sources.split(",")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        parser.error(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    data = {}
    for source in [NULL, *sources]:
        for split, n in (("train", args.n_train), ("test", args.n_test)):
            # the clean side, and the zero-KL test sets (whose AUROC must sit within 0.5 +/- 0.06:
            # 64 positives alone give a 95% half-width of 0.08), hold several samples per prompt
            zero_kl = source != NULL and SOURCES[source].family == "zero-kl" and split == "test"
            mult = args.clean_multiple if source == NULL or zero_kl else 1
            data[source, split] = source_transcripts(
                lm, source, split, halves[split], n * mult, out=out / "transcripts",
                key=args.key.encode(), max_new_tokens=args.max_new_tokens, payload_bits=1024,
                batch_size=args.batch_size, distinct=n)
            print(f"  {source}/{split}: {len(data[source, split])} transcripts", flush=True)
    lm.model.float()  # detectors read the model in float32

    info = {s: {"family": SOURCES[s].family, "bits_per_token": mean_bits_per_token(data[s, "test"]),
                "kl_per_token": float(np.mean([t.meta.get("kl_nats", 0.0) / max(1, t.meta["n_tokens"])
                                               for t in data[s, "test"]]))} for s in sources}
    detectors = args.detectors.split(",")
    cells_path = out / f"cells-{args.leave_out}.json"
    done = json.loads(cells_path.read_text()) if cells_path.is_file() else {}

    def keep(h, d, cell):
        done.setdefault(h, {})[d] = cell
        write_json(cells_path, done)
        print(f"  {h:<18} {d:<15} AUROC {cell['auroc']:.3f} ± {1.96 * cell['se']:.3f}", flush=True)

    held_out_only = [s for s in sources if not SOURCES[s].train]  # never a training positive
    results = leave_one_out(data, detectors, lm, families={s: SOURCES[s].family for s in sources},
                            leave_out=args.leave_out, done=done, on_cell=keep,
                            held_out_only=held_out_only)
    results = {h: results[h] for h in sources}
    table = matrix_markdown(results, detectors, info)
    table += "\n\n" + zero_kl_check({s: results[s] for s in sources if SOURCES[s].family == "zero-kl"})

    # clean text must stay clean: other prompt categories, other models
    fit_cats = set(args.fit_categories.split(","))

    def in_cats(ts, inside):
        return [t for t in ts if (t.meta.get("category") in fit_cats) == inside]

    fit_data = {(s, "train"): in_cats(data[s, "train"], True) for s in [NULL, *sources]}
    test_in = in_cats(data[NULL, "test"], True)
    calibration = [t for t in test_in if prompt_half(t.prompt) == "train"]
    same = [t for t in test_in if prompt_half(t.prompt) == "test"]
    if len(calibration) < 2 or not same:  # a toy run: calibrate and check on the same text
        calibration = same = test_in
    clean_sets = {"same prompts": same,
                  "other prompts": in_cats(data[NULL, "test"], False)}
    for i, name in enumerate(filter(None, args.other_models.split(","))):
        other = other_model(name, args.model)
        clean_sets[f"model {Path(name).name}"] = in_cats(source_transcripts(  # same categories
            other, NULL, "test", halves["test"], args.n_test, out=out / f"other-model-{i}",
            key=args.key.encode(), max_new_tokens=args.max_new_tokens, payload_bits=1024,
            batch_size=args.batch_size, distinct=args.n_test), True)
        del other
    fprs = false_positive_rates(fit_data, calibration, clean_sets, detectors, lm,
                                held_out_only=held_out_only)
    sets = list(clean_sets)
    fpr_lines = ["| detector | threshold | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for d, row in fprs.items():
        fpr_lines.append(f"| {d} | {row['threshold']:.3g} | "
                         + " | ".join(f"{row[s]:.3f} (n={row[f'n_{s}']})" for s in sets) + " |")
    fpr_table = "\n".join(fpr_lines)

    write_json(out / "results.json", {"leave_out": args.leave_out, "auroc": results,
                                      "sources": info, "false_positive_rates": fprs})
    with atomic_open(out / f"matrix-{args.leave_out}.md") as f:
        f.write(table + "\n\nFalse-positive rates at a 5% threshold set on held-out clean text "
                "(fitted on categories " + ", ".join(sorted(fit_cats)) + "):\n\n" + fpr_table + "\n")
    heatmap(results, detectors, out / f"matrix-{args.leave_out}.png")
    print(table)
    print()
    print(fpr_table)


if __name__ == "__main__":
    main()
