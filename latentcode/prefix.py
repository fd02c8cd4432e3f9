"""Forward passes over rows that share their prompts: each distinct prompt is read once.

RL reads the same prompt many times: a group of samples per episode, a likelihood receiver
that scores every response under every candidate's prompt, an LLM judge whose question wraps
every response in the same words. Here the distinct prompts go through the model once, their
KV cache is copied out to the rows that share them (autograd flows through the copy, so LoRA
gradients through the prompt are exact), and only the continuations are run per row. With 4
samples per prompt and prompts three times longer than the responses, that is about half the
tokens of the plain padded forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .generation import cache_kwargs, left_pad, prefill
from .lm import LM


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``rows`` share."""
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    for i in range(n):
        token = rows[0][i]
        if any(r[i] != token for r in rows):
            return i
    return n


def continuation_logits(lm: LM, prompts: Sequence[Sequence[int]],
                        continuations: Sequence[Sequence[int]], *,
                        last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's predictions along each ``prompt + continuation``, each distinct prompt read once.

    Returns ``(logits, mask)`` right-aligned on the continuations: with ``W`` the longest
    continuation, ``logits[r, W - n + t]`` predicts ``continuations[r][t]`` (``n`` its length)
    and ``mask`` marks those positions. With ``last_only`` it returns ``(logits, None)``, the
    prediction of the token after each whole row, shape ``[rows, vocab]``. Every prompt must be
    non-empty. Gradients flow unless the caller runs under ``torch.no_grad``.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    model, device = lm.model, lm.device
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    cache, first, mask = prefill(lm, prompts, pad)  # first: what follows each prompt
    lengths = torch.tensor([len(c) for c in continuations], device=device)
    # the tokens fed after the prompt: all of them for last_only, all but the last otherwise
    fed = [list(c) if last_only else list(c[:-1]) for c in continuations]
    width = max((len(f) for f in fed), default=0)
    if width:
        cont, cont_mask = left_pad([f or [pad] for f in fed], pad, device)
        for r, f in enumerate(fed):
            if not f:
                cont_mask[r] = 0
        start = mask.sum(-1)  # each prompt's real length: where its continuation begins
        cont_pos = (start[:, None] + cont_mask.cumsum(-1) - 1).clamp(min=0)
        rest = model(input_ids=cont, attention_mask=torch.cat([mask, cont_mask], dim=1),
                     position_ids=cont_pos, use_cache=True, logits_to_keep=1 if last_only else 0,
                     **cache_kwargs(model, cache)).logits
    if last_only:
        if not width:
            return first, None
        fed_any = torch.tensor([bool(f) for f in fed], device=device)[:, None]
        return torch.where(fed_any, rest[:, -1], first), None
    full = max(1, max((len(c) for c in continuations), default=0))
    slots = torch.arange(full, device=device)[None, :]
    keep = slots >= (full - lengths)[:, None]
    if not width:
        return first[:, None], keep
    # rest[:, j] predicts the token right-aligned at slot j + 1; each row's first token sits at
    # slot full - n, where rest holds a padding position's output
    shifted = torch.cat([torch.zeros_like(first)[:, None], rest], dim=1)
    at_first = (slots == (full - lengths)[:, None])[..., None]
    return torch.where(at_first, first[:, None], shifted), keep
