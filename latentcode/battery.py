"""The detector battery against labelled sources, train/test split by prompt.

Shared by ``latentcode demo`` and ``benchmarks/detection.py``. Negatives are null-codec
transcripts (the codecs' own sampling pipeline with nothing hidden), never plain
``sample_clean`` text: that may stop early or be sampled in another precision, a label leak
any detector would find. The prompts are split in two halves; every detector is fitted on
transcripts of the first half (unsupervised ones on the null transcripts only) and scored on
transcripts of the second, so no test prompt was seen in fitting. Supervised detectors are
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
UNSUPERVISED = ["distribution", "loglik", "logrank", "fast-detectgpt", "gltr", "tail", "overseer"]
SUPERVISED = ["tfidf", "probe", "minilm"]
NO_LM = {"tfidf", "minilm", "string-match"}


def codec_transcripts(lm, source: str, split: str, prompts: Sequence[Prompt], n: int, *,
                      out: Path, key: bytes, max_new_tokens: int, payload_bits: int,
                      batch_size: int, progress: bool = True) -> list[Transcript]:
    """``n`` transcripts of one codec source, cached in ``out/{source}-{split}.jsonl``."""
    path = Path(out) / f"{source}-{split}.jsonl"
    if path.is_file():
        return read_transcripts(path)
    codec_name, params = CODEC_SOURCES[source]
    codec = make_codec(codec_name, **params)
    seed = {"train": 1, "test": 2}[split]
    made = codec.encode(lm, assign_prompts(prompts, n, seed=seed),
                        random_payloads(n, payload_bits, seed=seed), key,
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
    spans, start = {}, len(data[NULL, "test"])  # where each source sits in test_all
    for source in sources:
        spans[source] = slice(start, start + len(data[source, "test"]))
        start += len(data[source, "test"])
    auroc: dict[str, dict] = {}
    pooled: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in names:
        supervised = name in SUPERVISED

        def fitted(fit_on, name=name):
            det = make_detector(name) if name in NO_LM else make_detector(name, lm=lm)
            return det.fit(fit_on)

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


def pooled_test(data: dict[tuple[str, str], list[Transcript]]) -> list[Transcript]:
    """Every test transcript, the clean ones first."""
    return data[NULL, "test"] + [t for (s, split), ts in data.items()
                                 if split == "test" and s != NULL for t in ts]


def with_scores(transcripts: Sequence[Transcript], pooled: dict[str, np.ndarray]) -> list[Transcript]:
    return [dataclasses.replace(t, scores={**t.scores, **{n: float(v[i]) for n, v in pooled.items()}})
            for i, t in enumerate(transcripts)]
