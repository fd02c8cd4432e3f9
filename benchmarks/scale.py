"""Detection throughput (transcripts/s): the local engine against Ray with 1 and 2 actors.

Run by hand: `.venv/bin/python benchmarks/scale.py [--n 256 --detectors distribution,tail]`
(needs latentcode[scale]). All three engines score the same transcripts with the same fitted
detectors in one run, so the ratios compare like with like. A Ray job's time includes starting
its actors and loading the model in each; the job is also timed on 2 transcripts, which is
nearly all that fixed cost, and the difference gives each engine's steady rate. The last column
is the largest score difference from the local engine.
"""

import argparse
import os
import time

import numpy as np
import torch

from detectors import make_detector
from latentcode.lm import load_lm
from latentcode.prompts import read_prompts
from latentcode.ray_engine import cluster_summary, score_on_ray
from latentcode.sampling import sample_clean


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256, help="transcripts to score")
    parser.add_argument("--reference", type=int, default=64, help="clean transcripts to fit on")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--detectors", default="distribution,tail")
    parser.add_argument("--batch-size", type=int, default=32, help="transcripts per ray batch")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    lm = load_lm(args.model)
    prompts = read_prompts()
    reference = sample_clean(lm, prompts, args.reference, max_new_tokens=args.max_new_tokens,
                             seed=1, progress=False, id_prefix="ref")
    targets = sample_clean(lm, prompts, args.n, max_new_tokens=args.max_new_tokens, seed=2,
                           progress=False, id_prefix="t")
    fitted = [make_detector(name, lm=lm).fit(reference) for name in args.detectors.split(",")]

    def local(ts):
        return {d.name: d.score(ts) for d in fitted}

    def on_ray(ts, actors):
        return score_on_ray(ts, fitted, model=args.model, actors=actors,
                            batch_size=args.batch_size)[0]

    print(cluster_summary())
    rows = []
    baseline, _ = _timed(lambda: local(targets[:2]))  # warm the local caches' code paths
    for label, run in (("local", local), ("ray, 1 actor", lambda ts: on_ray(ts, 1)),
                       ("ray, 2 actors", lambda ts: on_ray(ts, 2))):
        from detectors.token_stats import clear_cache

        clear_cache()  # no engine may reuse another's forward passes
        _, fixed = _timed(lambda run=run: run(targets[:2]))
        clear_cache()
        scores, total = _timed(lambda run=run: run(targets))
        if label == "local":
            baseline = scores
        diff = max(float(np.abs(scores[k] - baseline[k]).max()) for k in baseline)
        steady = (len(targets) - 2) / max(total - fixed, 1e-9)
        rows.append((label, total, fixed, len(targets) / total, steady, diff))

    print(f"model {lm.name}, {args.n} transcripts of <= {args.max_new_tokens} tokens, "
          f"detectors {args.detectors}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    head = (f"{'engine':<14} {'seconds':>8} {'fixed s':>8} {'texts/s':>8} {'steady/s':>9} "
            f"{'vs local':>9} {'max |diff|':>11}")
    print(head)
    print("-" * len(head))
    local_rate = rows[0][4]
    for label, total, fixed, rate, steady, diff in rows:
        print(f"{label:<14} {total:>8.1f} {fixed:>8.1f} {rate:>8.2f} {steady:>9.2f} "
              f"{steady / local_rate:>8.2f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
