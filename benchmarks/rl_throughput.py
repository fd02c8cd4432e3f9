"""RL step throughput: latentcode's trainer against TRL's GRPOTrainer doing the same work.

Both train the embedded model with a LoRA adapter (r 8, the architecture's default targets) on
the payload-1bit episodes: 8 prompts x 4 samples x at most 24 new tokens per step at
temperature 1, one optimiser step per round of sampling, a KL penalty of 0.05 to the
adapter-off reference, lr 1e-3. Both get the same, real reward: the receiver's log-probability
of the true secret. With ``--receiver likelihood`` that is the sender's own likelihood receiver
reading with the weights being trained (in TRL, through a reward callable bound to the
trainer's model); with ``--receiver lm`` it is the LM receiver, which also takes its own
``receiver.updates_per_step`` updates inside the step (in TRL, inside the reward callable,
reading with a separate copy of the base model: the same compute). The first step of each is
a warm-up and not counted. The table also gives how far each trainer moved its LoRA weights
(the L2 norm of the change), so that neither side is timed on zero-valued updates.

Needs the ``bench`` extra (TRL and its ``datasets`` dependency), never installed by
``make``: ``.venv/bin/pip install -e '.[bench]'``. Run by hand, alone on the machine:
``.venv/bin/python benchmarks/rl_throughput.py --steps 6 --receiver likelihood``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch

from latentcode.channel.config import load_config
from latentcode.channel.lm_receiver import LMReceiver
from latentcode.channel.receiver import LikelihoodReceiver
from latentcode.channel.regimes import make_regime
from latentcode.channel.regimes.base import Context
from latentcode.channel.sender import Rollouts
from latentcode.channel.trainer import build_parts, step_seed
from latentcode.lm import LM, load_lm


def lora_snapshot(model) -> dict[str, torch.Tensor]:
    """The sender's LoRA weights (the default adapter: not a receiver's)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if "lora_" in n and ".default." in n}


def moved(before: dict, model) -> float:
    after = lora_snapshot(model)
    return float(sum(((after[n] - v) ** 2).sum() for n, v in before.items()) ** 0.5)


def ours(cfg, steps: int) -> tuple[list[float], list[float], float]:
    parts = build_parts(cfg, load_lm(), None)
    optimizer = torch.optim.AdamW(parts.sender.trainable_parameters(), lr=cfg.rl.lr, weight_decay=0.0)
    regime = make_regime("rl", Context(cfg, *parts, optimizer))
    before = lora_snapshot(parts.sender.model)
    seconds, lengths = [], []
    for step in range(steps):
        started = time.perf_counter()
        row = regime.step(step)
        seconds.append(time.perf_counter() - started)
        lengths.append(row["response_tokens"])
    return seconds, lengths, moved(before, parts.sender.model)


def trl_reward(cfg, task, episodes: list, tokenizer, holder: dict):
    """The same reward as ours, as a TRL reward callable: the receiver's log-probability of
    the true secret, reading with the TRL trainer's current model (``holder["model"]``, set
    once the trainer exists); the LM receiver also learns from the batch, as in our step."""
    state: dict = {}

    def receiver():
        if "receiver" not in state:
            if cfg.receiver.kind == "lm":  # a copy of the base model: the same compute as ours
                reader = load_lm()
                state["receiver"] = LMReceiver(
                    reader, task.candidates, shared=False, lr=cfg.receiver.lr,
                    updates_per_step=cfg.receiver.updates_per_step,
                    batch_size=cfg.receiver.batch_size, history=cfg.receiver.history)
            else:
                model = holder["model"]
                lm = LM(model=model, tokenizer=tokenizer, name="trl-policy")
                state["receiver"] = LikelihoodReceiver(SimpleNamespace(lm=lm, model=model),
                                                       task.system_for)
        return state["receiver"]

    def reward(prompts, completions, episode, completion_ids=None, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        ids = (list(map(list, completion_ids)) if completion_ids is not None else
               [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts])
        rollouts = Rollouts([episodes[i] for i in episode], 1, [[] for _ in texts], ids, texts,
                            [True] * len(texts))
        reader = receiver()
        training = holder["model"].training  # the likelihood receiver switches to eval mode,
        log_post = reader.log_posteriors(rollouts)
        holder["model"].train(training)  # which would file TRL's metrics under eval_*
        truth = rollouts.truth()
        if cfg.receiver.kind == "lm":
            reader.observe(rollouts, log_post)
        return log_post[np.arange(len(truth)), truth].tolist()

    return reward


def trl(cfg, steps: int) -> tuple[list[float], list[float], float]:
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from datasets import Dataset
    from latentcode.channel.lora import lora_targets

    lm = load_lm()
    task = build_parts(cfg, load_lm(), None).task  # the same episodes as ours
    rows, episodes = [], []
    for step in range(steps):
        rng = random.Random(step_seed(cfg.seed, step, "episodes"))
        for ep in task.episodes(cfg.rl.prompts_per_step, rng, "train"):
            rows.append({"prompt": [{"role": "system", "content": ep.system},
                                    {"role": "user", "content": ep.prompt}],
                         "episode": len(episodes)})
            episodes.append(ep)
    holder: dict = {}

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
            model=lm.model, reward_funcs=trl_reward(cfg, task, episodes, lm.tokenizer, holder),
            args=args, train_dataset=Dataset.from_list(rows), processing_class=lm.tokenizer,
            callbacks=[clock],
            peft_config=LoraConfig(r=cfg.sender.lora_rank, lora_alpha=cfg.sender.lora_alpha,
                                   target_modules=lora_targets(lm.model), lora_dropout=0.0,
                                   task_type="CAUSAL_LM"))
        holder["model"] = trainer.model
        before = lora_snapshot(trainer.model)
        trainer.train()
        distance = moved(before, trainer.model)
    return clock.seconds, clock.lengths, distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/payload-1bit-lm.toml")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--receiver", choices=("likelihood", "lm"), default="likelihood",
                        help="whose log-probability of the truth is the reward (both trainers)")
    args = parser.parse_args()
    cfg = load_config(args.config, {"receiver.kind": args.receiver, "receiver.teacher": "",
                                    "receiver.handover": 0, "receiver.handover_accuracy": 0.0,
                                    "receiver.supervised_weight": 0.0,
                                    "reward.overseers": ["string-match"]})
    torch.manual_seed(0)
    results = {"latentcode": ours(cfg, args.steps), "trl GRPOTrainer": trl(cfg, args.steps)}
    rows = {}
    for name, (seconds, lengths, distance) in results.items():
        per_step = statistics.median(seconds[1:])
        tokens = float(np.mean(lengths[1:])) * cfg.rl.prompts_per_step * cfg.rl.group_size
        rows[name] = (per_step, tokens / per_step, float(np.mean(lengths[1:])), distance)
    base = rows["trl GRPOTrainer"][0]
    print(f"\n{'trainer':<18}{'s/step':>9}{'tokens/s':>10}{'mean len':>10}{'LoRA moved':>12}"
          f"{'speed-up':>10}")
    for name, (per_step, tps, mean_len, distance) in rows.items():
        print(f"{name:<18}{per_step:>9.2f}{tps:>10.1f}{mean_len:>10.1f}{distance:>12.4f}"
              f"{base / per_step:>9.2f}x")
    print(f"(reward: the {args.receiver} receiver's log-probability of the truth; "
          f"{args.steps - 1} timed steps each, median; {cfg.rl.prompts_per_step} prompts x "
          f"{cfg.rl.group_size} samples x <= {cfg.sender.max_new_tokens} tokens per step, "
          f"torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
