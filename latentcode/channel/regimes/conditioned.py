"""``conditioned``: reward-conditioned supervised fine-tuning, in the style of decision
transformers (Chen et al. 2021; online: Zheng et al. 2022).

Each step samples the step's budget of responses, scores them with the same reward as ``rl``,
ranks them and cuts the ranking into ``conditioned.buckets`` equal bins, and fine-tunes the
sender with the plain language-model loss on ``return tag + instructions + prompt ->
response``, where the tag (``[R0]`` lowest ... ``[R{B-1}]`` highest) is the bin the response
earned. There is no advantage and no KL term: the sender only learns what text goes with which
return. It is asked for the top return when sampling online and in evaluation.

``conditioned.online = false`` is a single offline round: every response comes from the frozen
reference (adapter off) and is scored as the reference would have been at the start, so the
data do not depend on training; they are drawn step by step from seeded streams, which gives
the same data as sampling them all up front and resumes without storing them.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.stats import rankdata

from ..sender import episode_prompt_ids
from . import register_regime
from .base import (
    Regime,
    draw_episodes,
    lm_loss,
    observe,
    optimizer_step,
    sample,
    score,
    step_metrics,
)


def return_tag(bucket: int) -> str:
    return f"[R{bucket}]"


def return_buckets(rewards: np.ndarray, buckets: int) -> np.ndarray:
    """Bin of each reward by rank within the round: ``0`` (lowest) .. ``buckets - 1``. Tied
    rewards share their average rank, so equal rewards always land in the same bin."""
    ranks = rankdata(rewards, method="average") - 1  # 0 .. n - 1
    return np.minimum((ranks * buckets / len(rewards)).astype(int), buckets - 1)


@register_regime("conditioned")
class ConditionedRegime(Regime):
    name = "conditioned"

    def __init__(self, ctx):
        super().__init__(ctx)
        if ctx.cfg.conditioned.buckets < 2:
            raise ValueError(f"conditioned.buckets must be >= 2, got {ctx.cfg.conditioned.buckets}")
        self.top = return_tag(ctx.cfg.conditioned.buckets - 1)

    def step(self, step: int) -> dict:
        ctx, started, cfg = self.ctx, time.perf_counter(), self.ctx.cfg.conditioned
        episodes = draw_episodes(ctx, step)
        if cfg.online:  # explore by asking for the top return
            rollouts = sample(ctx, step, [dataclasses.replace(e, condition=self.top)
                                          for e in episodes])
            scored = score(ctx, step, rollouts)
        else:  # the offline round: the reference wrote and was scored, untouched by training
            with ctx.sender.reference():
                rollouts = sample(ctx, step, episodes)
                scored = score(ctx, step, rollouts)
        bins = return_buckets(scored.rewards, cfg.buckets)
        tagged = [dataclasses.replace(rollouts.episode_of(r), condition=return_tag(int(b)))
                  for r, b in enumerate(bins)]
        loss = lm_loss(ctx.sender.lm, episode_prompt_ids(ctx.sender.lm, tagged),
                       rollouts.response_ids)
        grad_norm = optimizer_step(ctx, loss)
        learned = observe(ctx, scored)
        return step_metrics(step, scored, started, loss=float(loss.detach()), grad_norm=grad_norm,
                            **learned,
                            top_bucket_reward=float(scored.rewards[bins == bins.max()].mean()))

    def eval_conditions(self) -> dict[str, str]:
        return {"": self.top}
