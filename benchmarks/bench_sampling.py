"""Clean-sampling throughput (generated tokens/s) of the embedded model at several batch sizes.

Run by hand: `.venv/bin/python benchmarks/bench_sampling.py [--n 32 --max-new-tokens 64]`.
Every batch size samples the same prompts in the same process, so the ratios compare like
with like.
"""

import argparse
import time

import torch

from latentcode.lm import load_lm
from latentcode.prompts import read_prompts
from latentcode.sampling import sample_clean


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    lm = load_lm(args.model)
    prompts = read_prompts()
    sample_clean(lm, prompts, 2, max_new_tokens=4, progress=False)  # warm-up
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        started = time.perf_counter()
        ts = sample_clean(lm, prompts, args.n, max_new_tokens=args.max_new_tokens,
                          batch_size=bs, seed=0, progress=False)
        elapsed = time.perf_counter() - started
        tokens = sum(t.meta["n_tokens"] for t in ts)
        rows.append((bs, tokens, elapsed, tokens / elapsed))
    print(f"model {lm.name} on {lm.device}, torch threads {torch.get_num_threads()}, "
          f"n={args.n}, max_new_tokens={args.max_new_tokens}")
    print(f"{'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs batch ' + str(rows[0][0]):>11}")
    for bs, tokens, elapsed, rate in rows:
        print(f"{bs:>5} {tokens:>7} {elapsed:>8.1f} {rate:>9.1f} {rate / rows[0][3]:>10.1f}x")


if __name__ == "__main__":
    main()
