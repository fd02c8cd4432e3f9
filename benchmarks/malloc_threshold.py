"""What the 1 MB glibc mmap threshold of scoring (``latentcode/memory.py``) would cost an RL step.

Token statistics lower glibc's mmap threshold to 1 MB while they run, so that their [tokens x
vocabulary] temporaries go back to the OS. Every larger block is then mapped and unmapped on its
own, and a fresh mapping costs page faults: this benchmark measures what that threshold does to
the training loop (it was set for the whole process at import until this benchmark showed the
cost), against glibc's own behaviour. glibc's threshold starts at 128 KB and rises with every
larger block freed, up to 32 MB; a fixed 32 MB (``MALLOC_MMAP_THRESHOLD_=33554432``, which
latentcode leaves alone) stands for that adapted state.

Each setting runs in a child process of its own (glibc reads the variable at start-up), the
settings alternate (A B A B ...) so drift of the machine hits both, and each child times
``--steps`` RL steps of ``--config`` after one untimed warm-up step. Run by hand, alone on the
machine: ``.venv/bin/python benchmarks/malloc_threshold.py --rounds 2 --steps 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = {  # name: MALLOC_MMAP_THRESHOLD_ for the child process
    "latentcode 1 MB": str(1 << 20),
    "glibc adapted (32 MB)": str(32 << 20),
}


def child(config: str, steps: int) -> None:
    """Time ``steps`` RL steps after a warm-up; print one JSON line."""
    import torch

    from latentcode.channel.config import load_config
    from latentcode.channel.regimes import make_regime
    from latentcode.channel.regimes.base import Context
    from latentcode.channel.trainer import build_parts
    from latentcode.lm import load_lm

    cfg = load_config(config, {})
    torch.manual_seed(0)
    parts = build_parts(cfg, load_lm(), None)
    optimizer = torch.optim.AdamW(parts.sender.trainable_parameters(), lr=cfg.rl.lr,
                                  weight_decay=0.0)
    regime = make_regime("rl", Context(cfg, *parts, optimizer))
    seconds = []
    for step in range(steps + 1):
        started = time.perf_counter()
        regime.step(step)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"seconds": seconds[1:],
                      "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def run_child(config: str, steps: int, threshold: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env["MALLOC_MMAP_THRESHOLD_"] = threshold
    out = subprocess.run([sys.executable, __file__, "--child", "--config", config,
                          "--steps", str(steps)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/payload-4bit.toml")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per child")
    parser.add_argument("--rounds", type=int, default=2, help="children per setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.config, args.steps)
    seconds = {name: [] for name in SETTINGS}
    rss = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, threshold in SETTINGS.items():
            result = run_child(args.config, args.steps, threshold)
            seconds[name] += result["seconds"]
            rss[name].append(result["max_rss_gb"])
            print(f"round {round_ + 1}, {name}: {[round(s, 1) for s in result['seconds']]} s, "
                  f"peak {result['max_rss_gb']:.2f} GB", flush=True)
    base = statistics.median(seconds["glibc adapted (32 MB)"])
    print(f"\n{'mmap threshold':<24}{'n':>4}{'median s/step':>15}{'min':>8}{'max':>8}"
          f"{'peak RSS GB':>13}{'time ratio':>12}")
    for name in SETTINGS:
        values = seconds[name]
        print(f"{name:<24}{len(values):>4}{statistics.median(values):>15.2f}{min(values):>8.2f}"
              f"{max(values):>8.2f}{max(rss[name]):>13.2f}"
              f"{statistics.median(values) / base:>11.2f}x")
    print(f"({args.config}; {args.rounds} children per setting, alternating, {args.steps} timed "
          f"steps each after a warm-up)")


if __name__ == "__main__":
    main()
