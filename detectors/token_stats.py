"""Per-token statistics of transcripts under a reference LM: one forward pass per batch.

For every token of a response (the text re-tokenized, conditioned on the rendered prompt):
its log-probability, its rank among all tokens, and the mean and variance of log p(x) when x
is drawn from the model's own next-token distribution. The last two are what Fast-DetectGPT's
analytic sampling discrepancy needs (Bao et al. 2024); the first two are GLTR's (Gehrmann et
al. 2019). More describe where in the distribution the token was drawn from: the probability
mass of tokens strictly more likely than it (its probability-integral transform, PIT, uniform
for the model's own samples), the second and fourth moments of the mid-PIT under the model's
own sampling (so that a dispersion statistic has an exact expectation), and the mass outside
the top k tokens for k on a geometric ladder up to the largest vocabularies (``TAIL_KS``):
the probability that an honest sample at that position would rank below k; and the same by
mass, for the top-p nucleus at p on a ladder up to 0.999 (``NUCLEUS_PS``: the nucleus's size
and the mass outside it). Truncation at any depth, to a fixed count or a fixed mass, leaves a
deficit at some rung of one ladder. All of these let a detector compare what it
sees with what the model itself expects, with no clean reference at all.

Each token also carries its position classes (``CLASSES``: word start, sentence start,
punctuation, line break), read off the text's characters, so that a code confined to some
positions can be tested there instead of being diluted over the whole text.

Every distribution detector reads these, and they are computed once per (model, prompt, text)
in a process: a bounded cache serves the second detector that asks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from latentcode.generation import length_sorted_batches
from latentcode.lm import LM, evaluating
from latentcode.memory import large_blocks_returned
from latentcode.transcripts import Transcript

from .base import DetectorError
from .cache import ForwardCache, clear_all

CACHE_SIZE = 20_000
TAIL_KS = tuple(2 ** i for i in range(18))  # 1 .. 131072: past every vocabulary in use
NUCLEUS_PS = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)  # top-p truncation, by mass
CLASSES = {"word": 1, "sentence": 2, "punct": 4, "newline": 8}  # bits of TokenStats.classes


@dataclass(frozen=True)
class TokenStats:
    logp: np.ndarray  # log p(token | context), nats
    rank: np.ndarray  # 1 = the model's most likely token
    mean: np.ndarray  # E_{x~p} log p(x) at the same position (minus the entropy)
    var: np.ndarray  # Var_{x~p} log p(x)
    mass_above: np.ndarray  # sum of p over tokens strictly more likely than this one
    tail_mass: np.ndarray  # [tokens, len(TAIL_KS)]: mass outside the top k at this position
    nucleus_size: np.ndarray  # [tokens, len(NUCLEUS_PS)]: tokens in the smallest set of mass >= p
    nucleus_mass: np.ndarray  # [tokens, len(NUCLEUS_PS)]: mass outside that nucleus
    pit_m2: np.ndarray  # E_{x~p} (u(x) - 1/2)^2, u the mid-PIT
    pit_m4: np.ndarray  # E_{x~p} (u(x) - 1/2)^4
    classes: np.ndarray  # uint8 bit mask of CLASSES per token
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
    rows, texts, cut, classes = [], [], [], []
    for i, prompt in zip(todo, prompts):
        text = transcripts[i].text
        ids, spans = _tokens_and_spans(lm.tokenizer, text)
        if not ids:
            raise DetectorError(f"transcript {transcripts[i].id!r}: the text has no tokens")
        room = max_tokens if limit is None else min(max_tokens, limit - len(prompt))
        if room < 1:
            raise DetectorError(f"transcript {transcripts[i].id!r}: the prompt alone fills the "
                                f"model's context of {limit} tokens")
        cut.append(len(ids) > room)
        texts.append(ids[:room])
        classes.append(position_classes(text, spans[:room]))
        rows.append(prompt + ids[:room])
    # the [tokens x vocabulary] temporaries below go back to the OS (latentcode/memory.py)
    with large_blocks_returned():
        bar = tqdm(total=len(todo), desc="token statistics", unit="text", disable=not progress)
        for batch, inputs in length_sorted_batches(lm, rows, batch_size):
            width = max(len(texts[j]) for j in batch)
            with evaluating(lm.model):
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
                second = torch.where(p > 0, plogp * lp, torch.zeros_like(p)).sum(-1)
                var = (second - mean ** 2).clamp(min=0)
                above = torch.where(higher, p, torch.zeros_like(p)).sum(-1)
                ordered = p.sort(dim=-1, descending=True).values
                cum = ordered.cumsum(-1)
                tail = (1 - cum[:, [min(k, cum.shape[-1]) - 1 for k in TAIL_KS]]).clamp(min=0)
                # the top-p nucleus: the first rank whose cumulative mass reaches p
                ps = torch.tensor(NUCLEUS_PS, dtype=cum.dtype, device=cum.device)
                last = torch.searchsorted(cum, ps.expand(len(cum), -1).contiguous())
                last = last.clamp(max=cum.shape[-1] - 1)
                nucleus_out = (1 - cum.gather(1, last)).clamp(min=0)
                centred = cum - ordered / 2 - 0.5  # mid-PIT of each token in rank order, minus 1/2
                m2 = (ordered * centred ** 2).sum(-1)
                m4 = (ordered * centred ** 4).sum(-1)
                logp_, mean_, var_, above_, tail_, out_, m2_, m4_ = (
                    x.double().cpu().numpy() for x in (logp, mean, var, above, tail, nucleus_out,
                                                       m2, m4))
                stats = TokenStats(logp=logp_, rank=rank.cpu().numpy(), mean=mean_, var=var_,
                                   mass_above=above_, tail_mass=tail_,
                                   nucleus_size=(last + 1).cpu().numpy(), nucleus_mass=out_,
                                   pit_m2=m2_, pit_m4=m4_, classes=classes[j], truncated=cut[j])
                out[todo[j]] = stats
                _cache.put(keys[todo[j]], stats)
            bar.update(len(batch))
        bar.close()
    return out  # type: ignore[return-value]


def _tokens_and_spans(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and each token's character span (from the fast tokenizer's
    offsets; a slow one's tokens are decoded one by one and laid end to end)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans, at = [], 0
    for i in ids:
        n = len(tokenizer.decode([i]))
        spans.append((min(at, len(text)), min(at + n, len(text))))
        at += n
    return list(ids), spans


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def position_classes(text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each token's classes as a bit mask (``CLASSES``), from the characters of the text.

    A word start is a token whose first visible character follows whitespace (or opens the
    text); a sentence start is a word start after ``.``, ``!``, ``?`` or a line break (or at
    the start); punctuation is a token of punctuation and symbols only; a line break is a
    token that holds one.
    """
    out = np.zeros(len(spans), dtype=np.uint8)
    for t, (start, end) in enumerate(spans):
        piece = text[start:end]
        if "\n" in piece:
            out[t] |= CLASSES["newline"]
        visible = [i for i in range(start, end) if not text[i].isspace()]
        if not visible:
            continue
        first = visible[0]
        if all(_is_punct(text[i]) for i in visible):
            out[t] |= CLASSES["punct"]
        if first == 0 or text[first - 1].isspace():
            out[t] |= CLASSES["word"]
            back = first - 1
            while back >= 0 and text[back] in " \t":
                back -= 1
            if back < 0 or text[back] in ".!?\n":
                out[t] |= CLASSES["sentence"]
    return out


def clear_cache() -> None:
    """Empty every detector forward cache (token statistics and pooled hidden states)."""
    clear_all()
