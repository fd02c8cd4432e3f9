"""One batched decoding loop, shared by clean sampling and every codec.

The loop owns the model side (left padding, positions, KV cache, one forward pass per step for
the whole batch); a *chooser* owns the token choice. A chooser gets the next-token logits of
the rows still running and returns one token per row, so plain sampling, arithmetic coding
and Discop differ only in their chooser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .lm import LM

# (logits[rows, vocab] in float32 or float64, global row indices, step) -> token ids for those rows
Chooser = Callable[[torch.Tensor, list[int], int], Sequence[int] | torch.Tensor]


@dataclass
class Generation:
    tokens: list[int]  # generated ids, stop token excluded
    finished: bool  # True when a stop token ended it, False when max_new_tokens did


def left_pad(rows: list[list[int]], pad_id: int, device,
             width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def distinct(rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct rows in first-seen order, and for each input row the index of its copy."""
    seen: dict[tuple[int, ...], int] = {}
    index = [seen.setdefault(tuple(r), len(seen)) for r in rows]
    return [list(r) for r in seen], index


def prefill(lm: LM, prompts: Sequence[Sequence[int]], pad_id: int):
    """Read each distinct prompt once (a group of samples shares one), left-padded, and copy
    the result out to every row: ``(KV cache, next-token logits, attention mask)``, one row
    per prompt. Under grad mode the gradient flows back through the copies."""
    unique, copy_of = distinct(prompts)
    ids, mask = left_pad(unique, pad_id, lm.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1)
    cache, logits = output_cache(out), out.logits[:, -1, :]
    if len(unique) < len(prompts):
        index = torch.tensor(copy_of, device=lm.device)
        cache.batch_select_indices(index)
        logits, mask = logits[index], mask[index]
    return cache, logits, mask


WIDTH_STEP = 16


def length_sorted_batches(lm: LM, rows: list[list[int]], batch_size: int):
    """Token rows in batches of similar length, left-padded for one forward pass each: yields
    ``(row indices, model inputs)``; the inputs go to ``lm.model(**inputs)``.

    Every row is padded to its own length rounded up to a multiple of ``WIDTH_STEP``, and
    shares a batch only with rows of that width. A row's numbers then depend on the row alone,
    never on which other rows were scored with it (float rounding follows the padded shape):
    scoring a set in one call, in shards, or on Ray actors gives the same bits.
    """
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    width_of = [-(-len(r) // WIDTH_STEP) * WIDTH_STEP for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (width_of[i], len(rows[i]), i))
    start = 0
    while start < len(order):
        width = width_of[order[start]]
        stop = start + 1
        while stop < len(order) and stop - start < batch_size and width_of[order[stop]] == width:
            stop += 1
        batch = order[start:stop]
        ids, mask = left_pad([rows[i] for i in batch], pad, lm.device, width)
        yield batch, {"input_ids": ids, "attention_mask": mask,
                      "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        start = stop


def cache_kwargs(model, cache) -> dict:
    """The KV cache as a forward() argument: ``cache=`` in transformers >= 5.2x, where
    ``past_key_values=`` is deprecated, and ``past_key_values=`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps
    name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    return {name: cache}


def output_cache(out):
    """The KV cache a forward pass returned, under either name."""
    return out["cache"] if "cache" in out else out.past_key_values  # noqa: SIM401 (lazy: the old name warns)


@torch.inference_mode()
def _decode_batch(lm: LM, prompts: list[list[int]], rows: list[int], choose: Chooser,
                  max_new_tokens: int, min_new_tokens: int) -> list[Generation]:
    model, device = lm.model, lm.device
    stop_ids = lm.stop_ids
    pad_id = lm.tokenizer.pad_token_id
    cache, logits, mask = prefill(lm, prompts, pad_id)
    next_pos = mask.sum(-1)  # left-padded: each row's real length is its next position
    gens = [Generation([], False) for _ in prompts]
    running = list(range(len(prompts)))
    for step in range(max_new_tokens):
        step_logits = logits[running]
        if step_logits.dtype in (torch.float16, torch.bfloat16):
            step_logits = step_logits.float()
        if step < min_new_tokens:
            step_logits[:, stop_ids] = float("-inf")
        chosen = choose(step_logits, [rows[i] for i in running], step)
        chosen = [int(t) for t in chosen]
        tokens = torch.full((len(prompts),), pad_id, dtype=torch.long)
        for i, tok in zip(running, chosen):
            if tok in stop_ids:
                gens[i].finished = True
            else:
                gens[i].tokens.append(tok)
            tokens[i] = tok
        running = [i for i in running if not gens[i].finished]
        if not running or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=torch.long, device=device)], 1)
        out = model(input_ids=tokens[:, None].to(device), attention_mask=mask,
                    position_ids=next_pos[:, None], use_cache=True, **cache_kwargs(model, cache))
        cache, logits = output_cache(out), out.logits[:, -1, :]
        next_pos = next_pos + 1
    return gens


def decode_loop(
    lm: LM,
    prompt_ids: Sequence[list[int]],
    choose: Chooser,
    *,
    max_new_tokens: int,
    min_new_tokens: int = 1,
    batch_size: int = 16,
    progress: bool | str = False,
) -> list[Generation]:
    """Generate a response for every prompt, ``batch_size`` at a time, in the input order.

    Prompts are batched by length to keep padding small. Row indices passed to ``choose``
    are positions in ``prompt_ids``, so a chooser can keep per-row state (payload, key
    stream, RNG) that does not depend on how rows were batched.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    results: list[Generation | None] = [None] * len(prompt_ids)
    desc = progress if isinstance(progress, str) else "generating"
    with tqdm(total=len(order), desc=desc, unit="text", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            bar.set_postfix_str(f"batch of {len(rows)}")
            gens = _decode_batch(lm, [list(prompt_ids[i]) for i in rows], rows, choose,
                                 max_new_tokens, min_new_tokens)
            for i, gen in zip(rows, gens):
                results[i] = gen
            bar.update(len(rows))
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------- plain sampling


def nucleus_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next-token probabilities (float64) after temperature and top-p (Holtzman et al. 2020)."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of strictly more likely tokens
        sorted_p = torch.where(before < top_p, sorted_p, torch.zeros_like(sorted_p))
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


class AncestralSampler:
    """Plain sampling with one seeded stream per row (so batching never reorders randomness).

    Each row draws a uniform from ``numpy.random.default_rng([seed, row])`` and inverts the
    CDF of the (tempered, nucleus-filtered) distribution; temperature 0 is greedy.
    """

    def __init__(self, seed: int, temperature: float = 1.0, top_p: float = 1.0):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.seed, self.temperature, self.top_p = seed, temperature, top_p
        self._rngs: dict[int, np.random.Generator] = {}

    def rng(self, row: int) -> np.random.Generator:
        if row not in self._rngs:
            self._rngs[row] = np.random.default_rng([self.seed, row])
        return self._rngs[row]

    def __call__(self, logits: torch.Tensor, rows: list[int], step: int) -> list[int]:
        if self.temperature == 0:
            return logits.argmax(-1).tolist()
        cdf = nucleus_probs(logits, self.temperature, self.top_p).cumsum(-1)
        u = torch.tensor([self.rng(r).random() for r in rows], dtype=cdf.dtype,
                         device=cdf.device)
        picks = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
        return picks.clamp(max=cdf.shape[-1] - 1).tolist()
