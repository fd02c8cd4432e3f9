"""Detection AUROC of every detector against the reference codecs, train/test split by prompt.

Run by hand (about an hour on 2 CPU cores with the defaults):
`.venv/bin/python benchmarks/detection.py --out runs/detection`

Negatives are null-codec transcripts (the codecs' own sampling pipeline with nothing hidden),
never plain ``sample_clean`` text: that may stop early or be sampled in another precision, a
label leak any detector would find. The prompts are split in two halves; every detector is fitted
on transcripts of the first half (unsupervised ones on the null transcripts only) and scored on
transcripts of the second, so no test prompt was seen in fitting. Supervised detectors are
fitted per source for the table, and once more on every source together for
``scored-test.jsonl`` (all test transcripts with every detector's score: feed it to
``latentcode report``). Transcripts are written to ``--out`` as they are made and reused on a
re-run (delete the folder to start over); the table, with bits/token per source, goes to stdout
and ``results.json``. ``--detectors a,b`` re-runs only those: their rows and scores replace the
old ones in ``results.json`` and ``scored-test.jsonl``, every other detector's are kept.

Expected: huffman is easy to catch (it distorts the distribution), the zero-KL codecs
(discop, sparsamp) should sit at AUROC 0.5 within noise; a detector that beats that is leaking
labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from detectors import make_detector
from latentcode.codecs import make_codec
from latentcode.jsonl import write_json
from latentcode.lm import load_lm
from latentcode.payload import random_payloads
from latentcode.prompts import read_prompts
from latentcode.sampling import assign_prompts
from latentcode.transcripts import mean_bits_per_token, read_transcripts, write_transcripts

SOURCES = {  # name -> (codec, params)
    "null": ("null", {}),
    "huffman-k16": ("huffman", {"k": 16}),
    "huffman-k2": ("huffman", {"k": 2}),
    "arithmetic": ("arithmetic", {}),
    "discop": ("discop", {}),
    "sparsamp": ("sparsamp", {}),
}
UNSUPERVISED = ["distribution", "loglik", "logrank", "fast-detectgpt", "gltr", "tail", "overseer"]
SUPERVISED = ["tfidf", "probe", "minilm"]


def transcripts_for(lm, source: str, split: str, prompts, n: int, args, out: Path):
    path = out / f"{source}-{split}.jsonl"
    if path.is_file():
        return read_transcripts(path)
    codec_name, params = SOURCES[source]
    codec = make_codec(codec_name, **params)
    seed = {"train": 1, "test": 2}[split]
    chosen = assign_prompts(prompts, n, seed=seed)
    payloads = random_payloads(n, args.payload_bits, seed=seed)
    started = time.perf_counter()
    made = codec.encode(lm, chosen, payloads, args.key.encode(), max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, ids=[f"{source}-{split}-{i:05d}" for i in range(n)],
                        progress=True)
    for t in made:
        t.source = source
    write_transcripts(path, made)
    print(f"  {source}/{split}: {n} transcripts in {time.perf_counter() - started:.0f} s", flush=True)
    return made


def auroc_with_se(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """AUROC and its Hanley-McNeil standard error."""
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    a = float(roc_auc_score(y, np.r_[neg, pos]))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    n1, n0 = len(pos), len(neg)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    return a, float(se)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/detection")
    parser.add_argument("--n-train", type=int, default=150, help="transcripts per source, train")
    parser.add_argument("--n-test", type=int, default=400, help="transcripts per source, test")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--payload-bits", type=int, default=1024,
                        help="longer than any text carries: every token embeds")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--sources", default=",".join(s for s in SOURCES if s != "null"))
    parser.add_argument("--detectors", default=",".join(UNSUPERVISED + SUPERVISED))
    parser.add_argument("--key", default="detection-benchmark")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", vars(args))
    lm = load_lm(args.model, dtype=torch.float64)
    prompts = read_prompts()
    order = np.random.default_rng(0).permutation(len(prompts))
    half = len(prompts) // 2
    split_prompts = {"train": [prompts[i] for i in order[:half]],
                     "test": [prompts[i] for i in order[half:]]}
    sources = ["null"] + args.sources.split(",")
    data = {}
    for source in sources:
        for split, n in (("train", args.n_train), ("test", args.n_test)):
            data[source, split] = transcripts_for(lm, source, split, split_prompts[split], n, args, out)
    train_prompts = {t.prompt for t in data["null", "train"]}
    assert not train_prompts & {t.prompt for t in data["null", "test"]}, "prompt split leaked"
    lm.model.float()  # detectors read the model in float32

    names = args.detectors.split(",")
    results = {"bits_per_token": {s: mean_bits_per_token(data[s, "test"]) for s in sources[1:]},
               "auroc": {}}
    test_all = [t for s in sources for t in data[s, "test"]]
    pooled = {}  # detector -> scores on test_all, for the scored file and the report
    if (out / "results.json").is_file() and (out / "scored-test.jsonl").is_file():  # keep the rest
        results["auroc"] = json.loads((out / "results.json").read_text())["auroc"]
        earlier = {t.id: t.scores for t in read_transcripts(out / "scored-test.jsonl")}
        for name in {n for sc in earlier.values() for n in sc} - set(names):
            if all(name in earlier.get(t.id, {}) for t in test_all):
                pooled[name] = np.array([earlier[t.id][name] for t in test_all])
    for name in names:
        supervised = name in SUPERVISED
        needs_lm = name not in ("tfidf", "minilm")

        def fitted(fit_on, name=name, needs_lm=needs_lm):
            det = make_detector(name, lm=lm) if needs_lm else make_detector(name)
            return det.fit(fit_on)

        if not supervised:
            det = fitted(data["null", "train"])
            neg = det.score(data["null", "test"])
        for source in sources[1:]:
            if supervised:
                det = fitted(data["null", "train"] + data[source, "train"])
                neg = det.score(data["null", "test"])
            pos = det.score(data[source, "test"])
            a, se = auroc_with_se(neg, pos)
            results["auroc"].setdefault(name, {})[source] = {"auroc": a, "se": se,
                                                             "n_neg": len(neg), "n_pos": len(pos)}
            print(f"  {name:<15} {source:<12} AUROC {a:.3f} ± {se:.3f}", flush=True)
        if supervised:  # one monitor trained on every source, as a deployed one would be
            det = fitted([t for s in sources for t in data[s, "train"]])
        pooled[name] = det.score(test_all)
    scored = [dataclasses.replace(t, scores={n: float(pooled[n][i]) for n in pooled})
              for i, t in enumerate(test_all)]
    write_transcripts(out / "scored-test.jsonl", scored)
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
