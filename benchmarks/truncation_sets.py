"""How many answers a deep truncation needs: the truncation test on one text and on sets of them.

Honest text puts a token or two of a 64-token answer beyond rank 512 of SmolLM2's 49k, and
many answers none, so one answer cut to the top 512 is weak evidence whichever test reads it. This
benchmark reads the transcripts ``benchmarks/generalization.py`` wrote (``--from``), and for
each truncated source prints the AUROC against clean text of

- ``oracle``: the likelihood ratio at the source's own depth, known in advance (the best any
  per-text test can do against this source, by Neyman-Pearson, if its encoder samples the
  renormalised cut at temperature 1);
- ``per text``: the ``truncation`` detector's score, which must also find the depth;
- ``sets of s``: what :meth:`detectors.truncation.TruncationDetector.set_test` gives disjoint
  sets of s answers (train and test halves pooled, shuffled with ``--seed``), for each s of
  ``--sizes``, summed from each text's rungs read once.

Zero-KL sources are read the same way as a control: every column must stay near 0.5. AUROCs
carry a bootstrap 95% interval. Run by hand, for example:

    .venv/bin/python benchmarks/truncation_sets.py --from runs/generalization
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from detectors.distribution import LADDER, best_rung, rung_evidence
from detectors.token_stats import token_stats
from latentcode.lm import load_lm
from latentcode.transcripts import read_transcripts

DEPTHS = {"arithmetic-top512": "tail_512", "arithmetic-top64": "tail_64",
          "huffman-k256": "tail_256", "arithmetic": None, "discop": None}


def auroc_ci(pos: np.ndarray, neg: np.ndarray, rng, n_boot: int = 1000) -> tuple[float, float, float]:
    def auc(p, n):
        return roc_auc_score(np.r_[np.ones(len(p)), np.zeros(len(n))], np.r_[p, n])

    boots = [auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    return auc(pos, neg), *np.percentile(boots, [2.5, 97.5])


def cell(auc: tuple[float, float, float]) -> str:
    return f"{auc[0]:.2f} ({auc[1]:.2f}-{auc[2]:.2f})"


def both_halves(folder: Path, source: str):
    return [t for half in ("train", "test") for t in read_transcripts(folder / f"{source}-{half}.jsonl")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", default="runs/generalization",
                        help="a folder written by benchmarks/generalization.py")
    parser.add_argument("--sources", default=",".join(DEPTHS))
    parser.add_argument("--sizes", default="2,4,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    folder = Path(args.source) / "transcripts"
    sizes = [int(s) for s in args.sizes.split(",")]
    lm = load_lm(args.model, dtype=torch.float64)
    rng = np.random.default_rng(args.seed)

    def set_scores(evidence: np.ndarray, size: int) -> np.ndarray:
        """What ``set_test`` gives each disjoint set of ``size`` texts (the sum of each rung's
        log-ratio over the set, at its best rung), from the texts' rung evidence read once."""
        order = rng.permutation(len(evidence))
        sets = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        return np.array([best_rung(evidence[s].sum(axis=0))[0] for s in sets])

    def stats_of(transcripts):
        return token_stats(lm, transcripts, max_tokens=512, batch_size=16, progress=True)

    clean = stats_of(both_halves(folder, "null"))
    clean_rungs = np.array([rung_evidence(s) for s in clean])
    header = ["source", "n", "oracle", "per text"] + [f"sets of {s}" for s in sizes]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for source in args.sources.split(","):
        coded = stats_of(both_halves(folder, source))
        rungs = np.array([rung_evidence(s) for s in coded])
        cells = ["-"]
        if DEPTHS.get(source):
            j = LADDER.index(DEPTHS[source])
            cells = [cell(auroc_ci(*[np.array([max(0.0, rung_evidence(s, 0.0)[j]) for s in st])
                                     for st in (coded, clean)], rng))]
        cells.append(cell(auroc_ci(*[np.array([best_rung(e)[0] for e in r]) for r in (rungs, clean_rungs)], rng)))
        for size in sizes:
            cells.append(cell(auroc_ci(set_scores(rungs, size), set_scores(clean_rungs, size), rng)))
        print(f"| {source} | {len(coded)} vs {len(clean)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
