"""Detection AUROC of every detector against the reference codecs, train/test split by prompt.

Run by hand (about an hour on 2 CPU cores with the defaults):
`.venv/bin/python benchmarks/detection.py --out runs/detection`

The protocol (null-codec negatives, train/test split by prompt, supervised detectors fitted per
source and once pooled) is :mod:`latentcode.battery`'s, shared with ``latentcode demo``.
``scored-test.jsonl`` holds all test transcripts with every detector's score: feed it to
``latentcode report``. Transcripts are written to ``--out`` as they are made and reused on a
re-run (delete the folder to start over); the table, with bits/token per source, goes to stdout
and ``results.json``. ``--detectors a,b`` re-runs only those: their rows and scores replace the
old ones in ``results.json`` and ``scored-test.jsonl``, every other detector's are kept.

Expected: huffman is easy to catch (it distorts the distribution), the zero-KL codecs
(discop, sparsamp) should sit at AUROC 0.5 within noise; a detector that beats that is leaking
labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from latentcode.battery import (
    NULL,
    SUPERVISED,
    UNSUPERVISED,
    codec_transcripts,
    pooled_test,
    run_battery,
    split_by_prompt,
    with_scores,
)
from latentcode.jsonl import write_json
from latentcode.lm import load_lm
from latentcode.prompts import read_prompts
from latentcode.transcripts import mean_bits_per_token, read_transcripts, write_transcripts

DEFAULT_SOURCES = "huffman-k16,huffman-k2,arithmetic,discop,sparsamp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/detection")
    parser.add_argument("--n-train", type=int, default=150, help="transcripts per source, train")
    parser.add_argument("--n-test", type=int, default=400, help="transcripts per source, test")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--payload-bits", type=int, default=1024,
                        help="longer than any text carries: every token embeds")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--sources", default=DEFAULT_SOURCES)
    parser.add_argument("--detectors", default=",".join(UNSUPERVISED + SUPERVISED))
    parser.add_argument("--key", default="detection-benchmark")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", vars(args))
    lm = load_lm(args.model, dtype=torch.float64)
    halves = split_by_prompt(read_prompts())
    sources = [NULL] + args.sources.split(",")
    data = {}
    for source in sources:
        for split, n in (("train", args.n_train), ("test", args.n_test)):
            data[source, split] = codec_transcripts(
                lm, source, split, halves[split], n, out=out, key=args.key.encode(),
                max_new_tokens=args.max_new_tokens, payload_bits=args.payload_bits,
                batch_size=args.batch_size)
    lm.model.float()  # detectors read the model in float32

    names = args.detectors.split(",")
    results = {"bits_per_token": {s: mean_bits_per_token(data[s, "test"]) for s in sources[1:]},
               "auroc": {}}
    test_all = pooled_test(data)
    pooled = {}  # detector -> scores on test_all, for the scored file and the report
    if (out / "results.json").is_file() and (out / "scored-test.jsonl").is_file():  # keep the rest
        results["auroc"] = json.loads((out / "results.json").read_text())["auroc"]
        earlier = {t.id: t.scores for t in read_transcripts(out / "scored-test.jsonl")}
        for name in {n for sc in earlier.values() for n in sc} - set(names):
            if all(name in earlier.get(t.id, {}) for t in test_all):
                pooled[name] = np.array([earlier[t.id][name] for t in test_all])
    auroc, fresh, _ = run_battery(
        data, names, lm,
        on_result=lambda d, s, a, se: print(f"  {d:<15} {s:<12} AUROC {a:.3f} ± {se:.3f}", flush=True))
    results["auroc"].update(auroc)
    pooled.update(fresh)
    write_transcripts(out / "scored-test.jsonl", with_scores(test_all, pooled))
    write_json(out / "results.json", results)  # atomic: a re-run merges into it

    print(f"\n{'detector':<16}" + "".join(f"{s:>14}" for s in sources[1:]))
    print(f"{'bits/token':<16}" + "".join(f"{results['bits_per_token'][s]:>14.2f}"
                                          for s in sources[1:]))
    print("-" * (16 + 14 * len(sources[1:])))
    for name in [n for n in UNSUPERVISED + SUPERVISED if n in results["auroc"]]:
        cells = results["auroc"][name]
        print(f"{name:<16}" + "".join(f"{cells[s]['auroc']:>8.3f}±{cells[s]['se']:.3f}"
                                      for s in sources[1:]))


if __name__ == "__main__":
    main()
