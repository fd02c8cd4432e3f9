"""Clean transcripts: plain ancestral sampling from the model, label 0."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .generation import AncestralSampler, decode_loop
from .lm import LM
from .prompts import Prompt
from .transcripts import Transcript

MAX_EMPTY_RETRIES = 3


def assign_prompts(prompts: Sequence[Prompt], n: int, seed: int,
                   distinct: int | None = None) -> list[Prompt]:
    """``n`` prompts: a seeded shuffle of the list, cycled when ``n`` exceeds it.

    With ``distinct``, only the first ``distinct`` prompts of the shuffle are cycled through,
    so a larger set (the clean side, several samples per prompt) uses exactly the prompts of a
    smaller one drawn with the same seed (one source's test set): a matched comparison.
    """
    if not prompts:
        raise ValueError("no prompts to sample from")
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(prompts))
    cycle = len(prompts) if distinct is None else max(1, min(distinct, len(prompts)))
    return [prompts[order[i % cycle]] for i in range(n)]


def sample_clean(
    lm: LM,
    prompts: Sequence[Prompt],
    n: int,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    min_new_tokens: int = 4,
    progress: bool = True,
    id_prefix: str | None = None,
    rows: Sequence[int] | None = None,
) -> list[Transcript]:
    """Sample ``n`` clean responses; the same seed and batch size give the same text.

    ``rows`` makes only those of the ``n`` transcripts (a shard, for ``--engine ray``): each
    keeps its index, hence its prompt, id and random stream.

    Ids are ``{id_prefix}-{index}`` (default ``clean-s{seed}``).

    Each transcript draws from its own seeded stream, so batching cannot shift one row's
    randomness onto another; only float32 rounding, which depends a little on the batch shape,
    can flip a rare token between different batch sizes.

    A response that decodes to blank text (rare: a few whitespace tokens then a stop) is
    resampled from a fresh seeded stream, so every transcript has text.
    """
    chosen = assign_prompts(prompts, n, seed)
    wanted = list(range(n)) if rows is None else [int(r) for r in rows]
    if any(not 0 <= r < n for r in wanted):
        raise ValueError(f"rows must lie in [0, {n})")
    prompt_ids = dict(zip(wanted, lm.prompt_ids([chosen[i].prompt for i in wanted])))
    texts: dict[int, str] = {}
    n_tokens: dict[int, int] = {}
    finished: dict[int, bool] = {}
    attempts: dict[int, int] = {}
    todo = list(wanted)
    for attempt in range(MAX_EMPTY_RETRIES + 1):
        sampler = AncestralSampler(seed + 1_000_003 * attempt, temperature, top_p)
        # rows keep their global index so each transcript's stream is its own
        gens = decode_loop(
            lm, [prompt_ids[i] for i in todo],
            lambda logits, rows, step, sampler=sampler, todo=todo: sampler(
                logits, [todo[r] for r in rows], step),
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            batch_size=batch_size, progress="sampling clean" if progress else False,
        )
        for i, gen in zip(todo, gens):
            texts[i] = lm.tokenizer.decode(gen.tokens, skip_special_tokens=True)
            n_tokens[i], finished[i], attempts[i] = len(gen.tokens), gen.finished, attempt
        todo = [i for i in todo if not texts[i].strip()]
        if not todo:
            break
    if todo:
        raise RuntimeError(f"{len(todo)} responses stayed blank after {MAX_EMPTY_RETRIES} "
                           "retries; raise min_new_tokens")
    return [
        Transcript(
            id=f"{id_prefix or f'clean-s{seed}'}-{i:05d}",
            prompt=p.prompt,
            text=texts[i],
            label=0,
            source="clean",
            meta={
                "prompt_id": p.id,
                "category": p.category,
                "model": lm.name,
                "sampler": "ancestral",
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed,
                "max_new_tokens": max_new_tokens,
                "n_tokens": n_tokens[i],
                "finished": finished[i],
                "resampled": attempts[i],
            },
        )
        for i, p in ((i, chosen[i]) for i in wanted)
    ]
