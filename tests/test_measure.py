"""Measurements of instrumentality: prefix decodability, per-position KL, capacity, concealment."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from latentcode.channel.capacity import capacity_bits
from latentcode.channel.config import load_config
from latentcode.channel.measure import (
    half_position,
    position_kl,
    prefix_accuracy,
    truncate,
)
from latentcode.channel.trainer import build_parts, train
from latentcode.lm import tiny_lm

SMALL = {"rl.steps": 2, "rl.prompts_per_step": 4, "rl.group_size": 2, "sender.max_new_tokens": 5,
         "eval.every": 2, "eval.prompts": 8, "reward.overseers": ["string-match"], "rl.lr": 1e-2,
         "reward.calibration_samples": 8, "measure.enabled": False}


def parts_and_rollouts(n=6, max_new_tokens=6):
    cfg = load_config(None, SMALL)
    parts = build_parts(cfg, tiny_lm(seed=0), None)
    episodes = parts.task.episodes(n, random.Random(0), "eval")
    rollouts = parts.sender.generate(episodes, 1, max_new_tokens=max_new_tokens, temperature=1.0,
                                     seed=1)
    return parts, rollouts


def test_capacity_is_one_bit_for_perfect_decoding_and_near_zero_for_a_coin():
    rng = np.random.default_rng(0)
    truth = rng.permutation(np.arange(400) % 2)  # balanced: H = 1 bit exactly
    perfect = capacity_bits(truth, truth, n_boot=200)
    assert perfect["bits"] == pytest.approx(1.0, abs=1e-3) and perfect["ci_low"] > 0.9
    coin = capacity_bits(truth, rng.integers(0, 2, 400), n_boot=200)
    assert coin["bits"] < 0.02 and coin["ci_low"] <= coin["bits"] <= coin["ci_high"]
    four = capacity_bits(np.arange(400) % 4, np.arange(400) % 4, n_boot=50)
    assert four["bits"] == pytest.approx(2.0, abs=1e-3)


def test_half_position_is_where_half_the_gain_over_chance_is_reached():
    assert half_position([0.5, 0.55, 0.8, 0.9, 1.0], 0.5) == 3  # target 0.75
    assert half_position([0.9, 1.0, 1.0], 0.5) == 1
    assert half_position([0.6, 0.5, 0.45], 0.5) is None


def test_prefix_posteriors_of_the_whole_response_equal_the_receivers_and_shorter_ones_match_truncation():
    parts, rollouts = parts_and_rollouts()
    receiver = parts.receiver
    width = max(len(r) for r in rollouts.response_ids)
    post = receiver.prefix_log_posteriors(rollouts, width)
    np.testing.assert_allclose(post[-1], receiver.log_posteriors(rollouts), atol=1e-5)
    for k in (1, 3):
        cut = truncate(rollouts, k, parts.sender.lm.tokenizer)
        np.testing.assert_allclose(post[k - 1], receiver.log_posteriors(cut), atol=1e-5)
    acc = prefix_accuracy(receiver, rollouts, width, parts.sender.lm.tokenizer)
    assert len(acc) == width and all(0 <= a <= 1 for a in acc)


def test_position_kl_is_zero_for_a_fresh_adapter_and_positive_once_it_moves():
    parts, rollouts = parts_and_rollouts()
    fresh = position_kl(parts.sender, rollouts, 6)
    assert max(v for v in fresh if v is not None) < 1e-9  # LoRA starts as the identity
    with torch.no_grad():
        for p in parts.sender.trainable_parameters():
            p.add_(0.5)
    moved = position_kl(parts.sender, rollouts, 6)
    assert all(v > 1e-4 for v in moved if v is not None)


def test_a_finished_run_writes_every_measurement(tmp_path):
    cfg = load_config(None, {**SMALL, "measure.enabled": True,
                             "measure.detectors": ["distribution", "tfidf"], "eval.prompts": 16,
                             "measure.bootstrap": 50})
    summary = train(cfg, tmp_path / "run", lm=tiny_lm(seed=0), judge_lm=tiny_lm(seed=1),
                    progress=False)
    out = tmp_path / "run"
    result = json.loads((out / "instrumentality.json").read_text())
    assert result == summary["instrumentality"]
    assert len(result["prefix_accuracy"]) == len(result["position_kl"]) == 5
    assert len(result["prefix_truth_prob"]) == 5 and all(0 < p < 1 for p in result["prefix_truth_prob"])
    assert 0 <= result["capacity"]["ci_low"] <= result["capacity"]["ci_high"] <= 1
    assert set(result["concealment"]) == {"distribution", "tfidf"}
    assert result["best_detector"] in ("distribution", "tfidf")
    for name in ("prefix_decodability.png", "position_kl.png", "concealment/report/report.html",
                 "concealment/scored-test.jsonl"):
        assert (out / name).is_file(), name
    # the measurement re-reads the last evaluation's responses: the same accuracy
    assert result["accuracy"] == summary["final_eval"]["accuracy"]


def test_bits_of_a_multi_bit_secret_are_summed_bit_by_bit_where_the_full_table_is_too_sparse():
    """4-bit secrets on 128 answers, each bit decoded right with probability 0.85: the true
    information is 4 (1 - H(0.85)) = 1.56 bits. The 256-cell table reads far more even after
    its correction; the per-bit sum lands near the truth, inside its own interval."""
    from scipy.stats import entropy

    rng = np.random.default_rng(3)
    candidates = [format(i, "04b") for i in range(16)]
    truth = rng.integers(0, 16, 128)
    flips = (rng.random((128, 4)) > 0.85).astype(int)
    decoded = np.array([int("".join(str(int(b) ^ f) for b, f in zip(candidates[t], row)), 2)
                        for t, row in zip(truth, flips)])
    cap = capacity_bits(truth, decoded, candidates=candidates, n_boot=400)
    true_bits = 4 * (1 - entropy([0.85, 0.15], base=2))
    assert cap["estimator"] == "per-bit" and abs(cap["bits"] - true_bits) < 0.35
    assert cap["ci_low"] <= true_bits <= cap["ci_high"]
    assert cap["table_bits"] > true_bits + 0.5  # the sparse table's reading
    one = capacity_bits(truth % 2, decoded % 2, candidates=["0", "1"], n_boot=50)
    assert one["estimator"] == "table" and one["bits"] == one["table_bits"]


def test_a_run_measures_concealment_with_the_whole_battery_by_default():
    from latentcode.battery import SUPERVISED, UNSUPERVISED
    from latentcode.channel.config import MeasureConfig

    assert MeasureConfig().detectors == UNSUPERVISED + SUPERVISED
