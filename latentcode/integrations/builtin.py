"""The builtin monitors (``builtin:tail`` and friends): made once on this machine, then loaded by name.

No weights live in git or in the package: this module writes fitted detector folders into the
latentcode cache (``latentcode.lm.cache_dir() / "monitors"``, set by ``LATENTCODE_CACHE``), where
``load_monitor("builtin:NAME")`` and ``latentcode detect --load builtin:NAME`` find them::

    make monitors                                   # = python -m latentcode.integrations.builtin
    .venv/bin/python -m latentcode.integrations.builtin runs/generalization/transcripts

With no argument it samples what it needs with the embedded model (clean answers, and the
training half of every model-based, non-zero-KL source of the generalization benchmark),
cached beside the monitors so an interrupted build resumes; given a folder of the battery's
transcript files (``null-train.jsonl``, ``null-test.jsonl``, ``{source}-train.jsonl``, as
``benchmarks/generalization.py`` leaves them) it samples nothing. The clean training half fits
``tail`` and ``distribution``; clean training text against the coded training halves fits
``tfidf`` and ``probe`` (a zero-KL codec has nothing to learn, by construction, and post-hoc
edits are ``format``'s job); each threshold flags 5% of the clean *test* half, which no monitor
was fitted on. ``provenance.json`` records what went in.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..jsonl import write_json
from ..transcripts import read_transcripts
from .monitor import builtin_folder, save_monitor

UNSUPERVISED = ("tail", "distribution")
SUPERVISED = ("tfidf", "probe")
KEY = b"latentcode-builtin-monitors"


def coded_sources() -> list[str]:
    """Sources whose codes a supervised monitor can learn: model-based, not zero-KL."""
    from ..generalization import SOURCES

    return [name for name, spec in SOURCES.items() if spec.family not in ("zero-kl", "edits")]


def positive_sources(folder: Path) -> list[str]:
    """The learnable sources that have a training file in ``folder``."""
    return [name for name in coded_sources() if (folder / f"{name}-train.jsonl").is_file()]


def generate(lm, folder: Path, *, n_clean: int = 128, n_coded: int = 32,
             sources: Sequence[str] | None = None, max_new_tokens: int = 64,
             batch_size: int = 16) -> Path:
    """Sample the transcripts :func:`build` reads into ``folder`` (resumable, file by file):
    ``n_clean`` clean answers per half and ``n_coded`` per source, on the battery's prompt
    halves, as the generalization benchmark samples them."""
    from ..battery import NULL, split_by_prompt
    from ..generalization import source_transcripts
    from ..prompts import read_prompts

    halves = split_by_prompt(read_prompts())
    jobs = [(NULL, "train", n_clean), (NULL, "test", n_clean)]
    jobs += [(s, "train", n_coded) for s in (coded_sources() if sources is None else sources)]
    for source, split, n in jobs:
        made = source_transcripts(lm, source, split, halves[split], n, out=folder, key=KEY,
                                  max_new_tokens=max_new_tokens, payload_bits=1024,
                                  batch_size=batch_size)
        print(f"  {source}/{split}: {len(made)} transcripts", flush=True)
    return folder


def build(transcripts: Path, out: Path, *, lm=None, fpr: float = 0.05) -> dict:
    """Fit and save every builtin monitor from ``transcripts`` into ``out`` under ``lm``
    (``None``: the embedded model)."""
    from detectors import make_detector

    from ..lm import load_lm

    clean_fit = [replace(t, label=0) for t in read_transcripts(transcripts / "null-train.jsonl")]
    clean_cal = [replace(t, label=0) for t in read_transcripts(transcripts / "null-test.jsonl")]
    sources = positive_sources(transcripts)
    coded = [replace(t, label=1) for s in sources
             for t in read_transcripts(transcripts / f"{s}-train.jsonl")]
    lm = lm if lm is not None else load_lm()
    made = {}
    for name in UNSUPERVISED + SUPERVISED:
        det = make_detector(name, lm=lm)
        det.fit(clean_fit + coded if det.needs_labels else clean_fit)
        save_monitor(det, out / name, model=lm.name if det.needs_lm else None,
                     clean_scores=det.score(clean_cal), fpr=fpr,
                     calibrated_on="the clean test half, not fitted on")
        made[name] = {"fitted_on": {"clean": len(clean_fit),
                                    "coded": len(coded) if det.needs_labels else 0}}
        print(f"{name:<14} saved to {out / name}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip()
    provenance = {"model": lm.name, "clean_fit": len(clean_fit), "clean_calibration": len(clean_cal),
                  "coded_sources": sources, "fpr": fpr, "monitors": made,
                  "transcripts": str(transcripts), "git_commit": commit or None}
    write_json(out / "provenance.json", provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("transcripts", type=Path, nargs="?", default=None,
                        help="folder of the battery's transcript files (default: sample them "
                             "into OUT/transcripts)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where the monitors go (default: {builtin_folder()})")
    parser.add_argument("--model", default=None, help="model to fit under (default: embedded)")
    parser.add_argument("--n-clean", type=int, default=128, help="clean answers per half")
    parser.add_argument("--n-coded", type=int, default=32, help="answers per coded source")
    parser.add_argument("--fpr", type=float, default=0.05)
    args = parser.parse_args(argv)
    import torch

    from ..lm import load_lm

    out = args.out or builtin_folder()
    transcripts = args.transcripts
    if transcripts is None:  # codecs sample in float64, detectors read in float32
        lm = load_lm(args.model, dtype=torch.float64)
        transcripts = generate(lm, out / "transcripts", n_clean=args.n_clean, n_coded=args.n_coded)
        lm.model.float()
    else:
        lm = load_lm(args.model)
    build(transcripts, out, lm=lm, fpr=args.fpr)
    print(f"builtin monitors ready in {out}: latentcode detect FILE --load builtin:tail")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
