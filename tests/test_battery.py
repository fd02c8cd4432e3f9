"""The detector battery's protocol: split by prompt, per-source AUROC, pooled scores in order."""

from __future__ import annotations

import random

import numpy as np
import pytest

from latentcode.battery import NULL, pooled_test, run_battery, split_by_prompt, with_scores
from latentcode.prompts import Prompt
from latentcode.transcripts import Transcript

WORDS = ["the", "a", "river", "stone", "light", "quiet", "morning", "walk", "green", "door", "window", "bread"]


def texts(source: str, split: str, n: int, marker: str | None, seed: int,
          per_prompt: int = 1) -> list[Transcript]:
    """``n`` random word strings, ``marker`` planted once in each; ``per_prompt`` in a row
    answer one prompt (a clean side with several samples per prompt)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(12)]
        if marker:
            words[rng.randrange(12)] = marker
        out.append(Transcript(id=f"{source}-{split}-{i}", prompt=f"{split} prompt {i // per_prompt}",
                              text=" ".join(words), label=int(source != NULL),
                              payload="1" if source != NULL else None, source=source))
    return out


def data(n: int = 40) -> dict:
    groups = [(s, marker, split) for s, marker in ((NULL, None), ("marked", "zebra"), ("plain", None))
              for split in ("train", "test")]
    return {(s, split): texts(s, split, n, marker, seed=i) for i, (s, marker, split) in enumerate(groups)}


def test_a_supervised_detector_finds_a_marker_and_not_an_identical_source():
    d = data()
    auroc, pooled, seconds = run_battery(d, ["tfidf"], lm=None)
    assert auroc["tfidf"]["marked"]["auroc"] > 0.95
    assert abs(auroc["tfidf"]["plain"]["auroc"] - 0.5) < 0.2
    assert auroc["tfidf"]["marked"]["n_neg"] == 40 and auroc["tfidf"]["marked"]["n_pos"] == 40
    test_all = pooled_test(d)
    assert [t.source for t in test_all[:40]] == [NULL] * 40 and len(pooled["tfidf"]) == 120
    scored = with_scores(test_all, pooled)
    assert [t.id for t in scored] == [t.id for t in test_all]
    marked = np.array([t.scores["tfidf"] for t in scored if t.source == "marked"])
    clean = np.array([t.scores["tfidf"] for t in scored if t.source == NULL])
    assert marked.mean() > clean.mean() and seconds["tfidf"] >= 0


def test_the_battery_refuses_train_and_test_that_share_prompts():
    d = data(10)
    d[NULL, "test"] = d[NULL, "test"] + [d[NULL, "train"][0]]
    with pytest.raises(ValueError, match="split by prompt"):
        run_battery(d, ["tfidf"], lm=None)


def test_prompt_halves_are_disjoint_and_cover_every_prompt():
    prompts = [Prompt(id=f"p{i}", prompt=f"prompt {i}") for i in range(11)]
    halves = split_by_prompt(prompts, seed=3)
    ids = [p.id for p in halves["train"]] + [p.id for p in halves["test"]]
    assert sorted(ids) == sorted(p.id for p in prompts) and len(set(ids)) == 11
    assert split_by_prompt(prompts, seed=3) == halves != split_by_prompt(prompts, seed=4)
