"""``dpo``: online direct preference optimisation (Rafailov et al. 2023) against the frozen
reference. Each group of responses to one episode gives one pair: the best-rewarded response
is preferred to the worst (groups whose rewards tie give none). The loss is DPO's sigmoid form,
``-log sigmoid(beta * ((log pi(w) - log ref(w)) - (log pi(l) - log ref(l))))``, on summed
response log-probabilities; ``dpo.beta`` sets how far the policy may move from the reference.

TRL 1.16 computes this loss inside ``DPOTrainer._compute_loss``, bound to its trainer, its
dataset collation and its own reference model, with no function to call on a batch of pairs;
its trainers also own the loop. The regime needs the shared loop (one budget, one receiver,
the same artifacts as the other regimes), so the few lines of the loss are written here.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from . import register_regime
from .base import (
    Regime,
    draw_episodes,
    observe,
    optimizer_step,
    sample,
    score,
    select_rows,
    sequence_logprobs,
    step_metrics,
)


def preference_pairs(rewards: np.ndarray, group_size: int) -> list[tuple[int, int]]:
    """``(chosen row, rejected row)`` per group: its best and worst response; none on a tie."""
    pairs = []
    for g, group in enumerate(np.asarray(rewards).reshape(-1, group_size)):
        best, worst = int(np.argmax(group)), int(np.argmin(group))
        if group[best] > group[worst]:
            pairs.append((g * group_size + best, g * group_size + worst))
    return pairs


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean sigmoid DPO loss over pairs, and the implicit reward margins (for logging)."""
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()


@register_regime("dpo")
class DPORegime(Regime):
    name = "dpo"

    def __init__(self, ctx):
        super().__init__(ctx)
        if ctx.cfg.dpo.beta <= 0:
            raise ValueError(f"dpo.beta must be > 0, got {ctx.cfg.dpo.beta}")
        if ctx.cfg.rl.group_size < 2:
            raise ValueError("dpo needs rl.group_size >= 2 (a pair per group)")

    def step(self, step: int) -> dict:
        ctx, started = self.ctx, time.perf_counter()
        rollouts = sample(ctx, step, draw_episodes(ctx, step))
        scored = score(ctx, step, rollouts)
        pairs = preference_pairs(scored.rewards, ctx.cfg.rl.group_size)
        extra = {"pairs": len(pairs)}
        if pairs:
            rows = [r for pair in pairs for r in pair]  # chosen, rejected, chosen, ...
            prompts, responses = select_rows(rollouts, rows)
            policy = sequence_logprobs(ctx, prompts, responses)
            reference = sequence_logprobs(ctx, prompts, responses, reference=True)
            loss, margin = dpo_loss(policy[0::2], policy[1::2], reference[0::2],
                                    reference[1::2], ctx.cfg.dpo.beta)
            n_tokens = torch.tensor([max(len(r), 1) for r in responses], dtype=torch.float32)
            kl = ((policy.detach() - reference) / n_tokens).mean()  # log-ratio per token, sampled
            extra.update(loss=float(loss.detach()), grad_norm=optimizer_step(ctx, loss),
                         margin=float(margin.mean()), kl=float(kl))
        extra.update(observe(ctx, scored))
        return step_metrics(step, scored, started, **extra)
