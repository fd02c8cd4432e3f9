"""How the builtin monitors shipped in ``latentcode/monitors`` are made, so anyone can remake them.

Run by hand (it reads transcripts, it samples nothing)::

    .venv/bin/python -m latentcode.integrations.builtin runs/generalization/transcripts

from a folder of the battery's transcript files (``null-train.jsonl``, ``null-test.jsonl`` and
``{source}-train.jsonl``, as ``benchmarks/generalization.py`` leaves them): the clean training
half fits ``tail`` and ``distribution``; clean training text against the training half of every
model-based, non-zero-KL source fits ``tfidf`` and ``probe`` (a zero-KL codec has nothing to
learn, by construction, and the post-hoc edits are ``format``'s job); each threshold flags 5% of
the clean *test* half, which no monitor was fitted on. ``provenance.json`` records what went in.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import replace
from pathlib import Path

from ..jsonl import write_json
from ..transcripts import read_transcripts
from .monitor import builtin_folder, save_monitor

UNSUPERVISED = ("tail", "distribution")
SUPERVISED = ("tfidf", "probe")


def positive_sources(folder: Path) -> list[str]:
    """Sources with a training file whose codes a supervised monitor can learn."""
    from ..generalization import SOURCES

    return [name for name, spec in SOURCES.items() if spec.family not in ("zero-kl", "edits")
            and (folder / f"{name}-train.jsonl").is_file()]


def build(transcripts: Path, out: Path, *, fpr: float = 0.05) -> dict:
    from detectors import make_detector

    from ..lm import load_lm

    clean_fit = [replace(t, label=0) for t in read_transcripts(transcripts / "null-train.jsonl")]
    clean_cal = [replace(t, label=0) for t in read_transcripts(transcripts / "null-test.jsonl")]
    sources = positive_sources(transcripts)
    coded = [replace(t, label=1) for s in sources
             for t in read_transcripts(transcripts / f"{s}-train.jsonl")]
    lm = load_lm()
    made = {}
    for name in UNSUPERVISED + SUPERVISED:
        det = make_detector(name, lm=lm)
        det.fit(clean_fit + coded if det.needs_labels else clean_fit)
        save_monitor(det, out / name, model=lm.name if det.needs_lm else None,
                     clean_scores=det.score(clean_cal), fpr=fpr,
                     calibrated_on="the clean test half, not fitted on")
        made[name] = {"fitted_on": {"clean": len(clean_fit),
                                    "coded": len(coded) if det.needs_labels else 0}}
        print(f"{name:<14} saved to {out / name}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip()
    provenance = {"model": lm.name, "clean_fit": len(clean_fit), "clean_calibration": len(clean_cal),
                  "coded_sources": sources, "fpr": fpr, "monitors": made,
                  "transcripts": str(transcripts), "git_commit": commit or None}
    write_json(out / "provenance.json", provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("transcripts", type=Path, help="folder of the battery's transcript files")
    parser.add_argument("--out", type=Path, default=builtin_folder())
    parser.add_argument("--fpr", type=float, default=0.05)
    args = parser.parse_args(argv)
    build(args.transcripts, args.out, fpr=args.fpr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
