"""The zoo's answers to the paper's questions, on synthetic runs where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from latentcode.channel.zoo_questions import (
    difference,
    kl_centroid,
    questions,
    seed_bands,
    trend_test,
)


def run(label, regime, seed, *, gamma=1.0, half=2, kl_at=1, accuracy=0.9, marked=None,
        auroc=0.7):
    kl = [0.0] * 8
    kl[kl_at - 1] = 1.0
    return {"label": label, "regime": regime, "seed": seed, "gamma": gamma,
            "half_position": half, "position_kl": kl, "accuracy": accuracy,
            "accuracy_marked": marked, "best_auroc": auroc, "chance": 0.5,
            "prefix_accuracy": [0.5 + 0.1 * seed, 0.9]}


def test_seed_bands_hold_the_mean_and_vanish_when_seeds_agree():
    rows = [run("a", "rl", s) for s in range(3)] + [
        {**run("b", "rl", s), "prefix_accuracy": [0.7, 0.9]} for s in range(3)]
    a, b = seed_bands(rows, "prefix_accuracy")
    assert a["prefix_accuracy"][0] == pytest.approx(0.6)
    assert a["prefix_accuracy_low"][0] < 0.6 < a["prefix_accuracy_high"][0]
    assert b["prefix_accuracy_low"][0] == pytest.approx(0.7) == b["prefix_accuracy_high"][0]
    one = seed_bands([run("c", "rl", 0)], "prefix_accuracy")[0]
    assert one["prefix_accuracy_low"] == [None, None]  # no interval from one seed


def test_kl_centroid_is_where_the_kl_sits():
    assert kl_centroid([0, 0, 2.0, 0]) == pytest.approx(3.0)
    assert kl_centroid([1.0, None, 1.0]) == pytest.approx(2.0)
    assert kl_centroid([0.0, 0.0]) is None


def test_the_trend_test_finds_a_planted_trend_and_not_a_null_one():
    gammas = [1.0, 0.9, 0.7, 0.0] * 3
    later = [1 + 4 * (1 - g) + 0.1 * i for i, g in enumerate(gammas)]  # lower gamma, later
    found = trend_test(gammas, later)
    assert found["rho"] < -0.9 and found["p"] < 0.01 and found["n"] == 12
    assert trend_test(gammas, later, alternative="greater")["p"] > 0.9
    rng = np.random.default_rng(0)
    null = trend_test(gammas, rng.normal(size=12))
    assert null["p"] > 0.05
    assert trend_test([1, 1, 1], [1, 2, 3])["p"] is None  # nothing varies: no test
    exact = trend_test([1.0, 0.5, 0.0], [1, 2, 3])  # 3! orderings, counted exactly
    assert exact["p"] == pytest.approx(1 / 6)


def test_difference_and_its_exact_permutation_p():
    d = difference([0.9, 0.95, 1.0], [0.5, 0.55, 0.6])
    assert d["diff"] == pytest.approx(0.4) and d["low"] > 0
    assert d["p"] == pytest.approx(2 / 20)  # the smallest two-sided p with 3 + 3 runs
    same = difference([0.5, 0.6, 0.7], [0.7, 0.6, 0.5])
    assert same["diff"] == pytest.approx(0.0) and same["p"] == pytest.approx(1.0)
    assert difference([0.5], [])["diff"] is None


def test_questions_write_every_section_from_zoo_rows():
    rows = []
    for s in range(3):
        for g, at in ((1.0, 1), (0.9, 2), (0.7, 4), (0.0, 7)):
            rows.append(run(f"rl-g{g}", "rl", s, gamma=g, half=at + s % 2, kl_at=at))
        rows.append(run("rl-out-token", "rl-out-token", s, accuracy=0.9, marked=0.6 + 0.01 * s))
        rows.append(run("conditioned", "conditioned", s, accuracy=0.55 + 0.01 * s, auroc=0.5))
    rows.append(run("rl-g0.0", "rl", 3, gamma=0.0, half=None, kl_at=8))  # no code formed
    text, numbers = questions(rows)
    assert numbers["discount"]["half_position"]["rho"] < -0.8
    assert numbers["discount"]["half_position"]["p"] < 0.01
    assert numbers["discount"]["half_position"]["n"] == 12
    assert "1 of 13 rl runs formed none" in text
    assert numbers["discount"]["kl_centroid"]["n"] == 13
    gap = numbers["out_token"]["rl-out-token"]["gap"]
    assert gap[0] == pytest.approx(-0.29) and gap[2] < 0  # marked episodes decode worse
    cond = numbers["arms"]["conditioned"]["accuracy"]
    assert cond["diff"] == pytest.approx(0.56 - 0.9) and cond["high"] < 0
    assert "## The out-token" in text and "| conditioned | conditioned | 3 |" in text


def test_questions_say_when_there_is_nothing_to_test():
    text, numbers = questions([run("rl", "rl", 0)])
    assert "Fewer than two gammas" in text and "No run evaluated marked episodes" in text
    assert numbers["discount"] == {} and numbers["arms"] == {}
