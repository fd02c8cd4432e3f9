"""Rewards and credit: what each response earns and how it flows back to its tokens.

reward = decode - lambda * suspicion - length_weight * max(0, tokens - target_length)

- decode: log-probability the receiver gives the true secret (``logprob``), or 1/0 for a
  correct argmax (``accuracy``);
- suspicion: the mean over overseers of each one's suspicion in [0, 1], each weighted by its
  own lambda when its entry in ``reward.overseers`` sets a curriculum of its own;
- advantages are relative to the group of responses to the same episode, normalised by the
  group's spread (GRPO; RL-NOTES.md item 4), so small receiver preferences make full-size
  gradients;
- per-token credit with a discount: token t of a T-token response gets
  ``gamma ** (T - 1 - t)`` times the response's advantage. gamma = 1: every token gets the
  whole final reward; gamma < 1: early tokens get less (myopic), the knob between planning
  and not planning a code that pays off only at the end.
"""

from __future__ import annotations

import numpy as np
import torch

GROUP_EPS = 1e-4


def decode_reward(log_posteriors: np.ndarray, truth: np.ndarray, kind: str) -> np.ndarray:
    rows = np.arange(len(truth))
    if kind == "logprob":
        return log_posteriors[rows, truth]
    if kind == "accuracy":
        return (log_posteriors.argmax(1) == truth).astype(float)
    raise ValueError(f"reward.decode {kind!r}: choose logprob or accuracy")


def overseer_weight(step: int, weight: float, warmup: int, ramp: int | None = None) -> float:
    """lambda at a step: zero for ``warmup`` steps while the channel forms, then a linear ramp
    to ``weight`` over ``ramp`` steps (``warmup`` when not given). RL-NOTES.md item 6: a
    curriculum on the overseer. A blind overseer's suspicion is noise to the channel, and
    group-normalised advantages make any noise full-size: it must wait for the code to form."""
    ramp = warmup if ramp is None else ramp
    if step < warmup:
        return 0.0
    if ramp <= 0:
        return weight
    return weight * min(1.0, (step - warmup) / ramp)


def overseer_lambda(spec, step: int, reward_cfg) -> float:
    """lambda for one overseer at a step: its own curriculum where its spec sets one (a
    :class:`~latentcode.channel.config.OverseerSpec`), else the reward's."""
    pick = (lambda own, shared: shared if own is None else own)
    ramp = pick(getattr(spec, "ramp", None), reward_cfg.overseer_ramp)
    return overseer_weight(step, pick(getattr(spec, "weight", None), reward_cfg.overseer_weight),
                           pick(getattr(spec, "warmup", None), reward_cfg.overseer_warmup),
                           None if ramp < 0 else ramp)


def total_reward(decode: np.ndarray, suspicion: np.ndarray, n_tokens: np.ndarray, *,
                 lam: float, length_weight: float = 0.0, target_length: int = 0) -> np.ndarray:
    excess = np.maximum(0, n_tokens - target_length) if target_length > 0 else np.zeros_like(decode)
    return decode - lam * suspicion - length_weight * excess


def group_advantages(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """(r - group mean) / (group std + eps); rows are grouped consecutively."""
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    grouped = rewards.reshape(-1, group_size)
    centred = grouped - grouped.mean(1, keepdims=True)
    return (centred / (grouped.std(1, keepdims=True) + GROUP_EPS)).reshape(-1)


def token_credit(advantages: np.ndarray, lengths: list[int], gamma: float, width: int,
                 device=None) -> torch.Tensor:
    """``[rows, width]`` credits right-aligned like :func:`response_logprobs`' output."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"rl.gamma must be in [0, 1], got {gamma}")
    out = torch.zeros((len(lengths), width), dtype=torch.float32, device=device)
    for row, (adv, n) in enumerate(zip(advantages, lengths, strict=True)):
        if n:
            discount = gamma ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
            out[row, width - n:] = (float(adv) * discount).float()
    return out


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(policy || reference) at each sampled token (Schulman 2020):
    unbiased, always >= 0, low variance; what GRPO uses."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1
