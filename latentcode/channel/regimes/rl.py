"""``rl``: group-relative policy gradient (GRPO-style), the regime of issue 6.

Advantages are each response's reward relative to the other responses to the same episode;
token t of a T-token response gets ``rl.gamma ** (T - 1 - t)`` of it. ``gamma = 1`` lets the
final reward reach the first token (room to plan a code); ``gamma = 0`` credits the last token
only (every earlier token gets zero advantage: a myopic learner).
"""

from __future__ import annotations

import time

from ..rewards import group_advantages
from . import register_regime
from .base import (
    Regime,
    draw_episodes,
    kl_metrics,
    observe,
    optimizer_step,
    policy_gradient_loss,
    receiver_loss,
    sample,
    score,
    step_metrics,
)


@register_regime("rl")
class RLRegime(Regime):
    name = "rl"
    multiprocess = True  # shares of whole groups; every reduction below spans all processes

    def step(self, step: int) -> dict:
        ctx, started = self.ctx, time.perf_counter()
        rollouts = sample(ctx, step, draw_episodes(ctx, step))
        scored = score(ctx, step, rollouts, receiver_grad=ctx.cfg.receiver.supervised_weight > 0)
        advantages = group_advantages(scored.rewards, ctx.cfg.rl.group_size)
        loss, kl, mask, entropy = policy_gradient_loss(ctx, rollouts.prompt_ids,
                                                       rollouts.response_ids, advantages)
        loss = loss + receiver_loss(ctx, scored)
        grad_norm = optimizer_step(ctx, loss)
        learned = observe(ctx, scored)
        return step_metrics(step, scored, started, ctx.dist, **kl_metrics(kl, mask, ctx.dist),
                            **learned,
                            entropy=entropy, loss=ctx.dist.mean(float(loss.detach())),
                            grad_norm=grad_norm)
