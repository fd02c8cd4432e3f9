"""Cold vs cached load of the embedded model, each in a fresh process (what a user waits for).

Run by hand: `.venv/bin/python benchmarks/bench_load.py`. Prints a table and the ratio.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, time
t0 = time.perf_counter()
from latentcode.lm import load_lm
t1 = time.perf_counter()
lm = load_lm()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "cached": lm.info["cached"]}))
"""


def run_child(cache: str) -> dict:
    env = {**os.environ, "LATENTCODE_CACHE": cache}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(cache)
        cached = [run_child(cache) for _ in range(3)]
    best = min(cached, key=lambda r: r["load_s"])
    print(f"{'load of SmolLM2-135M-Instruct':<34} {'load_lm() s':>12} {'process s':>10}")
    print(f"{'cold (dequantize GGUF + cache)':<34} {cold['load_s']:>12.2f} {cold['process_s']:>10.2f}")
    for i, r in enumerate(cached, 1):
        print(f"{f'cached, run {i}':<34} {r['load_s']:>12.2f} {r['process_s']:>10.2f}")
    print(f"\ncold / cached load_lm(): {cold['load_s'] / best['load_s']:.1f}x "
          f"(whole process: {cold['process_s'] / best['process_s']:.1f}x)")


if __name__ == "__main__":
    main()
