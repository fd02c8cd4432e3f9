"""RL step throughput: latentcode's trainer against TRL's GRPOTrainer doing the same work.

Both train the embedded model with a LoRA adapter (r 8 on q/v) on the payload-1bit episodes:
8 prompts x 4 samples x at most 24 new tokens per step at temperature 1, one optimiser step
per round of sampling, a KL penalty of 0.05 to the adapter-off reference, lr 1e-3. The reward
is near-free in both (forbidden-word counting, plus a bag-of-words receiver in ours), so the
table compares the RL machinery itself: sampling, policy and reference log-probabilities,
backward pass, update. The first step of each is a warm-up and not counted.

Needs the ``bench`` extra (TRL and its ``datasets`` dependency), never installed by
``make``: ``.venv/bin/pip install -e '.[bench]'``. Run by hand, alone on the machine:
``.venv/bin/python benchmarks/rl_throughput.py --steps 6``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np
import torch

from detectors.string_match import forbidden_hits
from latentcode.channel.config import load_config
from latentcode.channel.regimes import make_regime
from latentcode.channel.regimes.base import Context
from latentcode.channel.trainer import build_parts, step_seed
from latentcode.lm import load_lm


def ours(cfg, steps: int) -> tuple[list[float], list[float]]:
    parts = build_parts(cfg, load_lm(), None)
    optimizer = torch.optim.AdamW(parts.sender.trainable_parameters(), lr=cfg.rl.lr, weight_decay=0.0)
    regime = make_regime("rl", Context(cfg, *parts, optimizer))
    seconds, lengths = [], []
    for step in range(steps):
        started = time.perf_counter()
        row = regime.step(step)
        seconds.append(time.perf_counter() - started)
        lengths.append(row["response_tokens"])
    return seconds, lengths


def trl(cfg, steps: int) -> tuple[list[float], list[float]]:
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from datasets import Dataset

    lm = load_lm()
    task = build_parts(cfg, load_lm(), None).task  # the same episodes as ours
    rows = []
    for step in range(steps):
        rng = random.Random(step_seed(cfg.seed, step, "episodes"))
        for ep in task.episodes(cfg.rl.prompts_per_step, rng, "train"):
            rows.append({"prompt": [{"role": "system", "content": ep.system},
                                    {"role": "user", "content": ep.prompt}],
                         "forbidden": list(ep.forbidden)})

    def reward(prompts, completions, forbidden, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [-float(forbidden_hits(t, f)) for t, f in zip(texts, forbidden)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.seconds, self.lengths = [], []

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])

    rl = cfg.rl
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=rl.prompts_per_step * rl.group_size,
            num_generations=rl.group_size, max_completion_length=cfg.sender.max_new_tokens,
            temperature=cfg.sender.temperature, top_p=1.0, beta=rl.kl_coef, learning_rate=rl.lr,
            lr_scheduler_type="constant", warmup_steps=0, gradient_accumulation_steps=1,
            num_iterations=1, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
            seed=cfg.seed, shuffle_dataset=False, max_grad_norm=rl.max_grad_norm,
            dataloader_num_workers=0)
        clock = Clock()
        trainer = GRPOTrainer(
            model=lm.model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=lm.tokenizer, callbacks=[clock],
            peft_config=LoraConfig(r=cfg.sender.lora_rank, lora_alpha=cfg.sender.lora_alpha,
                                   target_modules=list(cfg.sender.lora_targets), lora_dropout=0.0,
                                   task_type="CAUSAL_LM"))
        trainer.train()
    return clock.seconds, clock.lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/payload-1bit.toml")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    cfg = load_config(args.config, {"receiver.kind": "bow", "receiver.supervised_weight": 0.0,
                                    "reward.overseers": ["string-match"]})
    torch.manual_seed(0)
    results = {"latentcode": ours(cfg, args.steps), "trl GRPOTrainer": trl(cfg, args.steps)}
    rows = {}
    for name, (seconds, lengths) in results.items():
        per_step = statistics.median(seconds[1:])
        tokens = float(np.mean(lengths[1:])) * cfg.rl.prompts_per_step * cfg.rl.group_size
        rows[name] = (per_step, tokens / per_step, float(np.mean(lengths[1:])))
    base = rows["trl GRPOTrainer"][0]
    print(f"\n{'trainer':<18}{'s/step':>9}{'tokens/s':>10}{'mean len':>10}{'speed-up':>10}")
    for name, (per_step, tps, mean_len) in rows.items():
        print(f"{name:<18}{per_step:>9.2f}{tps:>10.1f}{mean_len:>10.1f}{base / per_step:>9.2f}x")
    print(f"({args.steps - 1} timed steps each, median; {cfg.rl.prompts_per_step} prompts x "
          f"{cfg.rl.group_size} samples x <= {cfg.sender.max_new_tokens} tokens per step, "
          f"torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
