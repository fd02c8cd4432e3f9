"""Capacity across payload sizes: one budget, k = 1, 2, 4, 8 secret bits per response.

Every run trains the embedded model with the same recipe and budget (``--steps`` x
``rl.prompts_per_step`` episodes x ``rl.group_size`` samples, ``--tokens`` new tokens at
most), decoded by the LM receiver, which starts warm for every k the same way: distilled from
the pseudo-likelihood receiver (k + 1 readings per response: each bit's exact posterior given
the others; for k = 1 the likelihood receiver itself), which gives the reward until the
hand-over (``configs/payload-1bit-lm.toml``'s cold start, but handed over only once the LM
receiver reads exactly half of three fresh batches in a row, 0.9 of them for k = 1). The table gives,
on the held-out prompts of the last evaluation, the decoded bits per response (Miller-Madow
corrected mutual information between secret and decoded secret, with its bootstrap 95%
interval), the exact-match rate, the mean per-bit accuracy, the teacher's exact match (each bit
read given the others: whether the sender's code formed, whatever the LM receiver made of it),
the overseers' flag rates and the wall time of each run.

Each k is a run folder under ``--out`` that ``latentcode train`` resumes, so a killed benchmark
picks up where it stopped; finished runs are only read back. Run by hand, alone on the
machine (another torch process slows both), for example:

    .venv/bin/python benchmarks/capacity.py --out runs/capacity --steps 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from latentcode.channel.config import load_config
from latentcode.channel.runlog import flag_rates
from latentcode.channel.trainer import train
from latentcode.jsonl import atomic_open, write_json

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "payload-1bit-lm.toml"


def run_config(bits: int, steps: int, tokens: int, prompts: int):
    cfg = load_config(CONFIG, {"task.bits": bits, "rl.steps": steps,
                               "sender.max_new_tokens": tokens, "eval.prompts": prompts,
                               "eval.every": steps, "measure.enabled": False})
    cfg.receiver.teacher = "pseudo-likelihood"  # one affordable teacher for every k
    cfg.receiver.pooling = "attention"  # a k-bit code may lie in the order of tokens
    # hand over once the LM receiver reads, never at a fixed step: forced on a receiver that
    # could not yet read, the hand-over gave a flat reward and the code fell apart
    # (configs/payload-4bit.toml, the try of 2026-12-07)
    cfg.receiver.handover = 0
    cfg.receiver.handover_accuracy = cfg.receiver.handover_accuracy if bits == 1 else 0.5
    cfg.reward.overseer_warmup = min(cfg.reward.overseer_warmup, max(1, 2 * steps // 3))
    return cfg


def row_of(bits: int, run: Path, cfg) -> dict:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    evals = [json.loads(line) for line in (run / "eval.jsonl").open()]
    final = evals[-1]
    per_bit = [v for k, v in final.items() if k.startswith("bit_accuracy/")] or [final["accuracy"]]
    return {"bits_sent": bits, "receiver": f"lm (from {cfg.receiver.teacher})",
            "n": final["n"], "exact_match": final["exact_match"], "bits": final["bits"],
            "bits_ci": [final["bits_ci_low"], final["bits_ci_high"]],
            "variational_bits": final["variational_bits"],
            "mean_bit_accuracy": sum(per_bit) / len(per_bit),
            # the teacher's exact match, each bit given the others: did the sender's code form?
            "teacher_exact": final.get(f"accuracy/{cfg.receiver.teacher}"),
            "flagged": flag_rates(final),
            "handed_over_at": next((m["step"] for m in metrics if m.get("handed_over") == 1.0), None),
            "train_minutes": sum(m["seconds"] for m in metrics) / 60,
            "wall_minutes": (sum(m["seconds"] for m in metrics)
                             + sum(e["seconds"] for e in evals)) / 60}


def table(rows: list[dict]) -> str:
    lines = [("| k | receiver | bits / response (95% CI) | exact match | mean bit acc. | "
              "variational bits | teacher exact | flagged | hand-over step | train min | "
              "wall min |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        teacher = "-" if r.get("teacher_exact") is None else f"{r['teacher_exact']:.3f}"
        flagged = ", ".join(f"{k} {v:.3f}" for k, v in r.get("flagged", {}).items()) or "-"
        lines.append(
            f"| {r['bits_sent']} | {r['receiver']} | {r['bits']:.2f} ({r['bits_ci'][0]:.2f}-"
            f"{r['bits_ci'][1]:.2f}) | {r['exact_match']:.3f} | {r['mean_bit_accuracy']:.3f} | "
            f"{r['variational_bits']:.2f} | {teacher} | {flagged} | {r['handed_over_at'] or '-'} | "
            f"{r['train_minutes']:.1f} | {r['wall_minutes']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/capacity")
    parser.add_argument("--bits", default="1,2,4,8", help="comma-separated k values")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=64, help="sender.max_new_tokens")
    parser.add_argument("--prompts", type=int, default=128, help="held-out prompts")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for bits in [int(b) for b in args.bits.split(",")]:
        cfg = run_config(bits, args.steps, args.tokens, args.prompts)
        run = out / f"k{bits}"
        if not (run / "summary.json").is_file():
            print(f"k = {bits}: training {run} (resumes if interrupted)", flush=True)
            train(cfg, run)
        rows.append(row_of(bits, run, cfg))
    text = table(rows)
    print(text)
    write_json(out / "capacity.json", {"steps": args.steps, "tokens": args.tokens, "rows": rows})
    with atomic_open(out / "capacity.md") as f:
        f.write(f"Budget per run: {args.steps} steps, {args.tokens} new tokens at most "
                f"(`benchmarks/capacity.py --steps {args.steps} --tokens {args.tokens}`).\n\n"
                f"{text}\n")


if __name__ == "__main__":
    main()
