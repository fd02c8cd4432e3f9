"""``rl-out-token``: the ``rl`` regime, but a share of each step's episodes carry an "out"
marker (``out_token.marker``, ``[x]``) before the sender's instructions and get no gradient at
all: they are sampled and scored like the others (the same budget), then left out of the loss.

The question it answers: after training, does the sender use the code on marked episodes too,
where it was never rewarded for it? The evaluation runs twice, without the marker (``accuracy``)
and with it (``accuracy/marked``).
"""

from __future__ import annotations

import dataclasses
import random
import time

import numpy as np

from ..rewards import group_advantages
from . import register_regime
from .base import (
    Regime,
    draw_episodes,
    kl_metrics,
    observe,
    optimizer_step,
    policy_gradient_loss,
    sample,
    score,
    select_rows,
    step_metrics,
    step_seed,
)


def mark_episodes(episodes, fraction: float, marker: str, rng: random.Random):
    """Put ``marker`` on ``round(fraction * n)`` of the episodes (at most n - 1: a step always
    trains on something), chosen by ``rng``."""
    k = min(round(fraction * len(episodes)), len(episodes) - 1)
    chosen = set(rng.sample(range(len(episodes)), k))
    return [dataclasses.replace(e, condition=marker) if i in chosen else e
            for i, e in enumerate(episodes)], chosen


@register_regime("rl-out-token")
class OutTokenRegime(Regime):
    name = "rl-out-token"

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = ctx.cfg.out_token
        if not 0.0 <= cfg.fraction < 1.0:
            raise ValueError(f"out_token.fraction must be in [0, 1), got {cfg.fraction}")
        if not cfg.marker.strip():
            raise ValueError("out_token.marker must be a visible tag such as \"[x]\"")
        if ctx.cfg.receiver.supervised_weight > 0:
            raise ValueError("rl-out-token takes no receiver.supervised_weight: its gradient "
                             "would reach the shared weights through the marked episodes")

    def step(self, step: int) -> dict:
        ctx, started, cfg = self.ctx, time.perf_counter(), self.ctx.cfg
        rng = random.Random(step_seed(cfg.seed, step, "out-token"))
        episodes, marked = mark_episodes(draw_episodes(ctx, step), cfg.out_token.fraction,
                                         cfg.out_token.marker, rng)
        rollouts = sample(ctx, step, episodes)
        scored = score(ctx, step, rollouts)
        advantages = group_advantages(scored.rewards, cfg.rl.group_size)
        is_marked = np.array([r // cfg.rl.group_size in marked for r in range(len(rollouts))])
        rows = np.flatnonzero(~is_marked)
        # only unmarked rows enter the forward pass with grad: marked ones cannot move a weight
        prompts, responses = select_rows(rollouts, rows)
        loss, kl, mask, entropy = policy_gradient_loss(ctx, prompts, responses, advantages[rows])
        grad_norm = optimizer_step(ctx, loss)
        correct = scored.log_post.argmax(1) == scored.truth
        extra = {"marked_share": len(marked) / len(episodes), **observe(ctx, scored)}
        if marked:  # the code on episodes it is never rewarded for
            extra["accuracy/marked"] = float(correct[is_marked].mean())
        return step_metrics(step, scored, started, **kl_metrics(kl, mask), entropy=entropy,
                            loss=float(loss.detach()), grad_norm=grad_norm, **extra)

    def eval_conditions(self) -> dict[str, str]:
        return {"": "", "marked": self.ctx.cfg.out_token.marker}
