"""Per-token statistics of transcripts under a reference LM: one forward pass per batch.

For every token of a response (the text re-tokenized, conditioned on the rendered prompt):
its log-probability, its rank among all tokens, and the mean and variance of log p(x) when x
is drawn from the model's own next-token distribution. The last two are what Fast-DetectGPT's
analytic sampling discrepancy needs (Bao et al. 2024); the first two are GLTR's (Gehrmann et
al. 2019). Two more describe the tail the token was drawn from: the probability mass of tokens
strictly more likely than it (its probability-integral transform, uniform for the model's own
samples), and the mass outside the top k tokens for k in ``TAIL_KS``, which is the probability
that an honest sample at that position would rank below k. Both let a detector compare what
it sees with what the model itself expects, with no clean reference at all. Every distribution detector reads these, and they are computed once per (model,
prompt, text) in a process: a bounded cache serves the second detector that asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from latentcode.generation import length_sorted_batches
from latentcode.lm import LM
from latentcode.transcripts import Transcript

from .base import DetectorError
from .cache import ForwardCache, clear_all

CACHE_SIZE = 20_000
TAIL_KS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class TokenStats:
    logp: np.ndarray  # log p(token | context), nats
    rank: np.ndarray  # 1 = the model's most likely token
    mean: np.ndarray  # E_{x~p} log p(x) at the same position (minus the entropy)
    var: np.ndarray  # Var_{x~p} log p(x)
    mass_above: np.ndarray  # sum of p over tokens strictly more likely than this one
    tail_mass: np.ndarray  # [tokens, len(TAIL_KS)]: mass outside the top k at this position
    truncated: bool  # the text was cut to fit max_tokens or the model's context

    def __len__(self) -> int:
        return len(self.logp)


_cache = ForwardCache(CACHE_SIZE)


def _context_limit(lm: LM) -> int | None:
    config = getattr(lm.model, "config", None)
    return getattr(config, "max_position_embeddings", None)


@torch.inference_mode()
def token_stats(lm: LM, transcripts: Sequence[Transcript], *, max_tokens: int = 512,
                batch_size: int = 8, progress: bool = False) -> list[TokenStats]:
    """Token statistics of each transcript's text, in input order.

    Texts longer than ``max_tokens`` tokens (or than the model's context after the prompt) are
    cut to their first tokens, and the result says ``truncated``.
    """
    from tqdm.auto import tqdm

    out: list[TokenStats | None] = [None] * len(transcripts)
    model_key = ForwardCache.model_key(lm)
    keys = [(model_key, max_tokens, t.prompt, t.text) for t in transcripts]
    todo = []
    for i, key in enumerate(keys):
        out[i] = _cache.get(key)
        if out[i] is None:
            todo.append(i)
    if not todo:
        return out  # type: ignore[return-value]

    prompts = lm.prompt_ids([transcripts[i].prompt for i in todo])
    limit = _context_limit(lm)
    rows, texts, cut = [], [], []
    for i, prompt in zip(todo, prompts):
        ids = lm.tokenizer(transcripts[i].text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise DetectorError(f"transcript {transcripts[i].id!r}: the text has no tokens")
        room = max_tokens if limit is None else min(max_tokens, limit - len(prompt))
        if room < 1:
            raise DetectorError(f"transcript {transcripts[i].id!r}: the prompt alone fills the "
                                f"model's context of {limit} tokens")
        cut.append(len(ids) > room)
        texts.append(ids[:room])
        rows.append(prompt + ids[:room])
    bar = tqdm(total=len(todo), desc="token statistics", unit="text", disable=not progress)
    for batch, inputs in length_sorted_batches(lm, rows, batch_size):
        width = max(len(texts[j]) for j in batch)
        logits = lm.model(**inputs, logits_to_keep=width + 1).logits[:, :-1]
        for row, j in enumerate(batch):
            n = len(texts[j])
            lp = torch.log_softmax(logits[row, width - n:].float(), dim=-1)
            target = torch.tensor(texts[j], device=lp.device)
            logp = lp.gather(1, target[:, None])[:, 0]
            higher = lp > logp[:, None]  # tokens strictly more likely than the one seen
            rank = higher.sum(-1) + 1
            p = lp.exp()
            plogp = torch.where(p > 0, p * lp, torch.zeros_like(p))
            mean = plogp.sum(-1)
            var = (torch.where(p > 0, plogp * lp, torch.zeros_like(p)).sum(-1) - mean ** 2).clamp(min=0)
            above = torch.where(higher, p, torch.zeros_like(p)).sum(-1)
            top = p.topk(min(max(TAIL_KS), p.shape[-1]), dim=-1).values.cumsum(-1)
            tail = (1 - top[:, [min(k, top.shape[-1]) - 1 for k in TAIL_KS]]).clamp(min=0)
            stats = TokenStats(logp.double().cpu().numpy(), rank.cpu().numpy(),
                               mean.double().cpu().numpy(), var.double().cpu().numpy(),
                               above.double().cpu().numpy(), tail.double().cpu().numpy(), cut[j])
            out[todo[j]] = stats
            _cache.put(keys[todo[j]], stats)
        bar.update(len(batch))
    bar.close()
    return out  # type: ignore[return-value]


def clear_cache() -> None:
    """Empty every detector forward cache (token statistics and pooled hidden states)."""
    clear_all()
