"""The detector battery against labelled sources, train/test split by prompt.

Shared by ``latentcode demo`` and ``benchmarks/detection.py``. Negatives are null-codec
transcripts (the codecs' own sampling pipeline with nothing hidden), never plain
``sample_clean`` text: that may stop early or be sampled in another precision, a label leak
any detector would find. The prompts are split in two halves; every detector is fitted on
transcripts of the first half (unsupervised ones on the null transcripts only) and scored on
transcripts of the second, so no test prompt was seen in fitting. Every comparison is matched:
within a split, each source answers the same prompts as the clean side (which may hold more
samples per prompt), so a detector can only tell them apart by what was hidden, never by what
was asked; :func:`run_battery` refuses data that is not. Supervised detectors are
fitted per source for the AUROC table, and once more on every source together for the pooled
scores (one monitor trained on everything, as a deployed one would be), which go to the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from .codecs import make_codec
from .payload import random_payloads
from .prompts import Prompt, split_by_prompt  # noqa: F401  (re-exported: the battery's split)
from .sampling import assign_prompts
from .transcripts import Transcript, read_transcripts, write_transcripts

NULL = "null"
CODEC_SOURCES = {  # source name -> (codec, params); "null" is the clean side
    NULL: ("null", {}),
    "huffman-k16": ("huffman", {"k": 16}),
    "huffman-k2": ("huffman", {"k": 2}),
    "arithmetic": ("arithmetic", {}),
    "meteor": ("meteor", {}),
    "discop": ("discop", {}),
    "sparsamp": ("sparsamp", {}),
}
UNSUPERVISED = ["distribution", "loglik", "logrank", "fast-detectgpt", "gltr", "tail", "truncation",
                "positions", "periodic", "format", "overseer"]
SUPERVISED = ["tfidf", "probe", "minilm", "stats-lr"]
NO_LM = {"tfidf", "minilm", "string-match", "format"}


SPLIT_SEEDS = {"train": 1, "test": 2}


def split_prompts(prompts: Sequence[Prompt], split: str, n: int,
                  distinct: int | None = None) -> list[Prompt]:
    """The prompts of ``n`` transcripts of one split, the same for every source: a clean side
    with ``n`` = several times ``distinct`` answers each of a source's ``distinct`` prompts
    equally often."""
    return assign_prompts(prompts, n, seed=SPLIT_SEEDS[split], distinct=distinct)


def codec_transcripts(lm, source: str, split: str, prompts: Sequence[Prompt], n: int, *,
                      out: Path, key: bytes, max_new_tokens: int, payload_bits: int,
                      batch_size: int, progress: bool = True,
                      distinct: int | None = None,
                      codec: tuple[str, dict] | None = None) -> list[Transcript]:
    """``n`` transcripts of one codec source on :func:`split_prompts`, cached in
    ``out/{source}-{split}.jsonl`` (made again if the cache answers other prompts).
    ``codec`` is the (name, params) to use, by default ``CODEC_SOURCES[source]``."""
    path = Path(out) / f"{source}-{split}.jsonl"
    chosen = split_prompts(prompts, split, n, distinct)
    if path.is_file():
        cached = read_transcripts(path)
        if [t.prompt for t in cached] == [p.prompt for p in chosen]:
            return cached
    codec_name, params = codec or CODEC_SOURCES[source]
    encoder = make_codec(codec_name, **params)
    seed = SPLIT_SEEDS[split]
    made = encoder.encode(lm, chosen, random_payloads(n, payload_bits, seed=seed), key,
                          max_new_tokens=max_new_tokens, batch_size=batch_size,
                          ids=[f"{source}-{split}-{i:05d}" for i in range(n)], progress=progress)
    for t in made:
        t.source = source
    write_transcripts(path, made)
    return made


def auroc_with_se(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """AUROC and its Hanley-McNeil standard error."""
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    a = float(roc_auc_score(y, np.r_[neg, pos]))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    n1, n0 = len(pos), len(neg)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    return a, float(se)


def run_battery(data: dict[tuple[str, str], list[Transcript]], names: Sequence[str], lm, *,
                on_result: Callable[[str, str, float, float], None] | None = None
                ) -> tuple[dict, dict[str, np.ndarray], dict[str, float]]:
    """Fit and score every detector in ``names``.

    ``data[(source, split)]`` holds each source's transcripts, ``(NULL, split)`` the clean ones.
    Returns ``{detector: {source: {auroc, se, n_neg, n_pos}}}``, each detector's scores on
    the pooled test transcripts (:func:`pooled_test`) and each detector's seconds.
    """
    from detectors import make_detector

    sources = [s for s, split in data if split == "test" and s != NULL]
    test_all = pooled_test(data)
    if {t.prompt for t in data[NULL, "train"]} & {t.prompt for t in data[NULL, "test"]}:
        raise ValueError("the train and test transcripts share prompts: split by prompt")
    check_matched(data)
    spans, start = {}, len(data[NULL, "test"])  # where each source sits in test_all
    for source in sources:
        spans[source] = slice(start, start + len(data[source, "test"]))
        start += len(data[source, "test"])
    auroc: dict[str, dict] = {}
    pooled: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in names:
        def made(name=name):
            return make_detector(name) if name in NO_LM else make_detector(name, lm=lm)

        def fitted(fit_on):
            return made().fit(fit_on)

        supervised = made().needs_labels  # labelled data or clean text alone: it says which

        started = time.perf_counter()
        if not supervised:  # one fit on clean text, every test transcript scored once
            scores = np.asarray(fitted(data[NULL, "train"]).score(test_all), dtype=float)
            neg = scores[:len(data[NULL, "test"])]
        for source in sources:
            if supervised:
                det = fitted(data[NULL, "train"] + data[source, "train"])
                neg = det.score(data[NULL, "test"])
                pos = det.score(data[source, "test"])
            else:
                pos = scores[spans[source]]
            a, se = auroc_with_se(neg, pos)
            auroc.setdefault(name, {})[source] = {"auroc": a, "se": se, "n_neg": len(neg),
                                                  "n_pos": len(pos)}
            if on_result:
                on_result(name, source, a, se)
        if supervised:  # one monitor trained on every source, as a deployed one would be
            det = fitted([t for (s, split), ts in data.items() if split == "train" for t in ts])
            scores = np.asarray(det.score(test_all), dtype=float)
        pooled[name] = scores
        seconds[name] = round(time.perf_counter() - started, 1)
    return auroc, pooled, seconds


def check_matched(data: dict[tuple[str, str], list[Transcript]]) -> None:
    """Refuse a comparison whose sides answer different prompts: within each split, every
    source's prompts must be among the clean side's, and every clean prompt among some
    source's (the clean side may answer each several times)."""
    for split in ("train", "test"):
        clean = {t.prompt for t in data.get((NULL, split), [])}
        answered: set[str] = set()
        for (source, s), ts in data.items():
            if s != split or source == NULL:
                continue
            prompts = {t.prompt for t in ts}
            answered |= prompts
            if prompts - clean:
                raise ValueError(
                    f"source {source!r} ({split}) answers {len(prompts - clean)} prompts the clean "
                    f"side does not, e.g. {min(prompts - clean)[:80]!r}: sample the clean side "
                    "on the same prompts (split_prompts with distinct=..., several samples each)")
        if answered and clean - answered:
            raise ValueError(
                f"the clean side ({split}) answers {len(clean - answered)} prompts no source does, "
                f"e.g. {min(clean - answered)[:80]!r}: draw it on the sources' prompts "
                "(split_prompts with distinct=...)")


def pooled_test(data: dict[tuple[str, str], list[Transcript]]) -> list[Transcript]:
    """Every test transcript, the clean ones first."""
    return data[NULL, "test"] + [t for (s, split), ts in data.items()
                                 if split == "test" and s != NULL for t in ts]


def with_scores(transcripts: Sequence[Transcript], pooled: dict[str, np.ndarray]) -> list[Transcript]:
    return [dataclasses.replace(t, scores={**t.scores, **{n: float(v[i]) for n, v in pooled.items()}})
            for i, t in enumerate(transcripts)]
