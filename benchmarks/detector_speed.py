"""Throughput of every detector on the embedded model, and how close ``distribution`` comes to
the model's own batched forward pass.

Run by hand: `.venv/bin/python benchmarks/detector_speed.py [--n 96 --max-new-tokens 128]`.

The same process samples ``n`` clean responses (label 0) and ``n`` at temperature 1.5 (label 1,
only so that supervised detectors have two classes to fit), fits each detector on the first
half of the prompts and scores the other half. Scoring is timed with the token-statistics
cache cleared, so each detector pays for its own model passes. For ``distribution`` it also
times, on the same texts and batch size:

- raw forward: ``lm.model(**inputs)`` over the same left-padded batches, logits kept for the
  text's positions only, and nothing else (the floor: a detector cannot be faster than reading
  those logits once);
- one at a time: the same statistics computed one transcript per forward pass.

and prints distribution/one-at-a-time (target >= 5x) and distribution/raw (target >= 0.7).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from detectors import make_detector
from detectors.token_stats import clear_cache, token_stats
from latentcode.generation import length_sorted_batches
from latentcode.lm import load_lm
from latentcode.prompts import read_prompts
from latentcode.sampling import sample_clean

DETECTORS = ["distribution", "loglik", "logrank", "fast-detectgpt", "gltr", "tfidf", "probe",
             "overseer", "minilm", "paraphrase"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@torch.inference_mode()
def raw_forward(lm, transcripts, batch_size: int) -> None:
    prompts = lm.prompt_ids([t.prompt for t in transcripts])
    rows, widths = [], []
    for t, p in zip(transcripts, prompts):
        ids = lm.tokenizer(t.text, add_special_tokens=False)["input_ids"]
        rows.append(p + ids)
        widths.append(len(ids))
    for batch, inputs in length_sorted_batches(lm, rows, batch_size):
        lm.model(**inputs, logits_to_keep=max(widths[i] for i in batch) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="transcripts per class")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--paraphrase-n", type=int, default=16,
                        help="test transcripts scored by the (generating) paraphrase detector")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    lm = load_lm(args.model)
    prompts = read_prompts()
    clean = sample_clean(lm, prompts, args.n, max_new_tokens=args.max_new_tokens, seed=1)
    hot = sample_clean(lm, prompts, args.n, max_new_tokens=args.max_new_tokens, seed=2,
                       temperature=1.5)
    for t in hot:
        t.label = 1
    by_prompt = sorted({t.prompt for t in clean + hot})
    train_prompts = set(by_prompt[: len(by_prompt) // 2])
    train = [t for t in clean + hot if t.prompt in train_prompts]
    test = [t for t in clean + hot if t.prompt not in train_prompts]
    n_tokens = sum(len(lm.tokenizer(t.text)["input_ids"]) for t in test)
    print(f"model {lm.name} on {lm.device}, torch threads {torch.get_num_threads()}; "
          f"train {len(train)}, test {len(test)} transcripts ({n_tokens / len(test):.0f} "
          f"tokens each on average), batch size {args.batch_size}\n")

    raw_forward(lm, test[:4], args.batch_size)  # warm-up
    _, raw_s = timed(lambda: raw_forward(lm, test, args.batch_size))
    clear_cache()
    _, single_s = timed(lambda: [token_stats(lm, [t], batch_size=1) for t in test])

    rows = []
    for name in args.detectors.split(","):
        det = make_detector(name, lm=lm, batch_size=args.batch_size) if name not in (
            "tfidf", "minilm") else make_detector(name)
        clear_cache()
        _, fit_s = timed(lambda det=det: det.fit(train))
        scored = test[: args.paraphrase_n // 2] + test[-(args.paraphrase_n // 2):] \
            if name == "paraphrase" else test
        clear_cache()
        scores, score_s = timed(lambda det=det, scored=scored: det.score(scored))
        assert np.isfinite(scores).all(), name
        rows.append((name, len(scored), fit_s, score_s))

    print(f"{'detector':<16}{'fit s':>9}{'scored':>8}{'score s':>9}{'texts/s':>9}")
    print("-" * 51)
    print(f"{'(raw forward)':<16}{'':>9}{len(test):>8}{raw_s:>9.1f}{len(test) / raw_s:>9.2f}")
    print(f"{'(one at a time)':<16}{'':>9}{len(test):>8}{single_s:>9.1f}"
          f"{len(test) / single_s:>9.2f}")
    for name, n, fit_s, score_s in rows:
        print(f"{name:<16}{fit_s:>9.1f}{n:>8}{score_s:>9.1f}{n / score_s:>9.2f}")
    dist = next((r for r in rows if r[0] == "distribution"), None)
    if dist:
        print(f"\ndistribution vs one at a time: {single_s / dist[3]:.2f}x (target >= 5)")
        print(f"distribution vs raw forward:   {raw_s / dist[3]:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
