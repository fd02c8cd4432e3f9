"""Training regimes on tiny_lm: each runs end to end and has its defining property."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch

from latentcode.channel.config import REGIME_NAMES, load_config
from latentcode.channel.regimes import REGIMES, make_regime
from latentcode.channel.regimes.base import Context
from latentcode.channel.trainer import build_parts, train
from latentcode.lm import tiny_lm

SMALL = {"rl.steps": 2, "rl.prompts_per_step": 4, "rl.group_size": 2, "sender.max_new_tokens": 5,
         "eval.every": 2, "eval.prompts": 8, "reward.overseers": ["string-match"], "rl.lr": 1e-2,
         "reward.calibration_samples": 8, "measure.enabled": False}


ARTIFACTS = ("config.json", "metrics.jsonl", "metrics.csv", "eval.jsonl", "samples.jsonl",
             "learning_curve.png", "summary.json", "adapter/adapter_model.safetensors",
             "checkpoint/state.json", "tensorboard")


def context(regime: str, **overrides) -> Context:
    cfg = load_config(None, {**SMALL, "regime": regime, **overrides})
    parts = build_parts(cfg, tiny_lm(seed=0), None)
    optimizer = torch.optim.AdamW(parts.sender.trainable_parameters(), lr=cfg.rl.lr)
    return Context(cfg, *parts, optimizer)


def lora_state(ctx) -> list[torch.Tensor]:
    return [p.detach().clone() for p in ctx.sender.trainable_parameters()]


def test_every_config_regime_is_registered_and_unknown_ones_are_named():
    assert set(REGIME_NAMES) == set(REGIMES)
    with pytest.raises(ValueError, match="regime 'ppo'"):
        make_regime("ppo", None)
    from latentcode.channel.config import ConfigError

    with pytest.raises(ConfigError, match="regime"):
        load_config(None, {"regime": "ppo"})


@pytest.mark.parametrize("regime", ["rl", "rl-out-token", "conditioned", "dpo"])
def test_each_regime_trains_end_to_end_and_writes_every_artifact(tmp_path, regime):
    cfg = load_config(None, {**SMALL, "regime": regime})
    summary = train(cfg, tmp_path / regime, lm=tiny_lm(seed=0), progress=False)
    out = tmp_path / regime
    for name in ARTIFACTS:
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("accuracy" in r for r in rows)
    assert json.loads((out / "config.json").read_text())["regime"] == regime
    assert summary["final_eval"]["step"] == 2


def test_rl_with_gamma_zero_gives_every_token_but_the_last_zero_gradient():
    from latentcode.channel.regimes.base import policy_gradient_loss

    ctx = context("rl", **{"rl.gamma": 0.0, "rl.kl_coef": 0.0})
    episodes = ctx.task.episodes(2, random.Random(0), "train")
    rollouts = ctx.sender.generate(episodes, 2, max_new_tokens=5, temperature=1.0, seed=0)
    captured = {}
    from latentcode.channel.regimes import base

    real = base.response_logprobs

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if not kwargs.get("reference"):
            out[0].retain_grad()
            captured["logp"], captured["mask"] = out[0], out[1]
        return out

    base.response_logprobs = spy
    try:
        loss, *_ = policy_gradient_loss(ctx, rollouts.prompt_ids, rollouts.response_ids,
                                        np.array([1.0, -1.0, 0.5, -0.5]))
    finally:
        base.response_logprobs = real
    loss.backward()
    grad, mask = captured["logp"].grad, captured["mask"]
    for row, ids in enumerate(rollouts.response_ids):
        n = len(ids)
        assert grad[row, -1] != 0  # the last token carries the whole advantage
        assert torch.all(grad[row, grad.shape[1] - n:-1] == 0)  # earlier tokens: nothing
    assert mask.sum() > len(rollouts)  # there were earlier tokens to check


def test_out_token_episodes_change_no_parameter(monkeypatch):
    """Rewrite the rewards of the marked episodes at random: the update stays the same bit for
    bit, so nothing about them reached the weights."""
    from latentcode.channel.regimes import out_token

    real_score = out_token.score
    updates = []
    for trial in range(2):
        ctx = context("rl-out-token", **{"out_token.fraction": 0.5})
        seen_marked = []

        def scrambled(ctx_, step, rollouts, trial=trial, seen_marked=seen_marked, **kw):
            scored = real_score(ctx_, step, rollouts, **kw)
            marked = np.array([rollouts.episode_of(r).condition == "[x]"
                               for r in range(len(rollouts))])
            seen_marked.append(int(marked.sum()))
            scored.rewards = scored.rewards.copy()
            scored.rewards[marked] = np.random.default_rng(trial).normal(0, 10, marked.sum())
            return scored

        monkeypatch.setattr(out_token, "score", scrambled)
        regime = make_regime("rl-out-token", ctx)
        before = lora_state(ctx)
        row = regime.step(0)
        after = lora_state(ctx)
        assert seen_marked == [4] and row["marked_share"] == 0.5 and "accuracy/marked" in row
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        updates.append([a - b for a, b in zip(after, before, strict=True)])
    for a, b in zip(*updates, strict=True):
        assert torch.equal(a, b)


def test_out_token_marks_a_share_and_always_trains_on_something():
    from latentcode.channel.regimes.out_token import mark_episodes

    episodes = context("rl-out-token").task.episodes(8, random.Random(0), "train")
    marked, chosen = mark_episodes(episodes, 0.25, "[x]", random.Random(1))
    assert len(chosen) == 2 and sum(e.condition == "[x]" for e in marked) == 2
    assert all(e.sender_system.startswith("[x] ") for e in marked if e.condition)
    _, everything = mark_episodes(episodes, 0.99, "[x]", random.Random(1))
    assert len(everything) == 7
    assert make_regime("rl-out-token", context("rl-out-token")).eval_conditions() == {
        "": "", "marked": "[x]"}


def test_out_token_eval_reports_both_conditions(tmp_path):
    cfg = load_config(None, {**SMALL, "regime": "rl-out-token"})
    train(cfg, tmp_path / "run", lm=tiny_lm(seed=0), progress=False)
    last = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])
    assert {"accuracy", "accuracy/marked"} <= set(last)
    marked = (tmp_path / "run" / "transcripts" / "eval-step-0002-marked.jsonl").read_text()
    assert '"condition": "[x]"' in marked


def test_return_buckets_rank_within_the_round_and_ties_share_a_bin():
    from latentcode.channel.regimes.conditioned import return_buckets

    assert return_buckets(np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2]), 3).tolist() == [0, 2, 1, 1, 2, 0]
    tied = return_buckets(np.array([1.0, 0.0, 1.0, 0.0]), 2)
    assert tied[0] == tied[2] == 1 and tied[1] == tied[3] == 0


def test_conditioned_trains_on_the_return_tag_each_response_earned(monkeypatch):
    from latentcode.channel.regimes import base, conditioned

    captured = {}
    real_score = conditioned.score

    def spy(*args, **kwargs):
        captured["scored"] = real_score(*args, **kwargs)
        return captured["scored"]

    rendered = []  # the prompts the language-model loss is taken under
    real_logprobs = base.response_logprobs

    def logprobs_spy(lm, prompts, responses, **kw):
        rendered.extend(lm.tokenizer.decode(p) for p in prompts)
        return real_logprobs(lm, prompts, responses, **kw)

    monkeypatch.setattr(conditioned, "score", spy)
    monkeypatch.setattr(base, "response_logprobs", logprobs_spy)
    ctx = context("conditioned", **{"conditioned.buckets": 2})
    regime = make_regime("conditioned", ctx)
    before = lora_state(ctx)
    regime.step(0)
    rewards = captured["scored"].rewards
    expected = [f"[R{b}]" for b in conditioned.return_buckets(rewards, 2)]
    trained_on = [re.search(r"\[R\d\] You are a helpful assistant", text) for text in rendered]
    assert all(trained_on)
    assert [m.group()[:4] for m in trained_on] == expected and set(expected) == {"[R0]", "[R1]"}
    # online exploration asked for the top return; so does the evaluation
    assert all(e.condition == "[R1]" for e in captured["scored"].rollouts.episodes)
    assert regime.eval_conditions() == {"": "[R1]"}
    assert any(not torch.equal(a, b) for a, b in zip(before, lora_state(ctx), strict=True))


def test_offline_conditioned_data_come_from_the_reference_whatever_the_weights():
    from latentcode.channel.regimes import conditioned

    texts = []
    for scale in (0.0, 5.0):
        ctx = context("conditioned", **{"conditioned.online": False})
        with torch.no_grad():
            for p in ctx.sender.trainable_parameters():
                p.add_(scale)  # a trained-looking adapter must not change the offline data
        real = conditioned.sample
        seen = []
        conditioned.sample = lambda *a, seen=seen, real=real, **k: seen.append(real(*a, **k)) or seen[-1]
        try:
            make_regime("conditioned", ctx).step(0)
        finally:
            conditioned.sample = real
        texts.append(seen[0].texts)
    assert texts[0] == texts[1]


def test_dpo_pairs_the_best_and_worst_of_each_group_and_its_loss_is_dpo():
    from latentcode.channel.regimes.dpo import dpo_loss, preference_pairs

    assert preference_pairs(np.array([0.1, 0.9, 0.5, 0.2, 0.2, 0.2]), 3) == [(1, 0)]
    zero = torch.zeros(3)
    loss, margin = dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert float(loss) == pytest.approx(np.log(2)) and torch.all(margin == 0)
    chosen = torch.tensor([2.0, 1.0, 0.0], requires_grad=True)
    loss, _ = dpo_loss(chosen, zero, zero, zero, beta=0.5)
    expected = np.mean([np.log1p(np.exp(-0.5 * c)) for c in (2.0, 1.0, 0.0)])
    assert float(loss.detach()) == pytest.approx(expected)
    loss.backward()
    assert torch.all(chosen.grad < 0)  # raising the chosen response's log-prob lowers the loss


def test_dpo_step_updates_from_the_pairs():
    ctx = context("dpo", **{"reward.decode": "logprob"})
    before = lora_state(ctx)
    row = make_regime("dpo", ctx).step(0)
    assert row["pairs"] == 4 and row["loss"] == pytest.approx(np.log(2), abs=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(before, lora_state(ctx), strict=True))


def test_distill_trains_a_student_on_the_teachers_text_read_by_the_teachers_receiver(
        tmp_path, tiny_folder):
    teacher_run = tmp_path / "teacher"
    train(load_config(None, {**SMALL, "sender.model": str(tiny_folder)}), teacher_run,
          lm=tiny_lm(seed=0), progress=False)
    cfg = load_config(None, {**SMALL, "regime": "distill", "sender.model": str(tiny_folder),
                             "distill.teacher": str(teacher_run)})
    parts = build_parts(cfg, tiny_lm(seed=0), None)
    ctx = Context(cfg, *parts, torch.optim.AdamW(parts.sender.trainable_parameters(), lr=1e-2))
    regime = make_regime("distill", ctx)
    assert ctx.receiver.sender is regime.teacher  # the original receiver reads the student
    teacher_before = [p.detach().clone() for p in regime.teacher.model.parameters()]
    student_before = lora_state(ctx)
    row = regime.step(0)
    assert "loss" in row and row["accuracy"] >= 0
    assert all(torch.equal(a, b) for a, b in
               zip(teacher_before, regime.teacher.model.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(student_before, lora_state(ctx), strict=True))
    summary = train(cfg, tmp_path / "student", lm=tiny_lm(seed=0), progress=False)
    assert summary["final_eval"]["n"] == 8
    for name in ARTIFACTS:
        assert (tmp_path / "student" / name).exists(), name


def test_distill_refuses_a_teacher_that_is_not_a_finished_run_or_another_task(tmp_path):
    from latentcode.channel.regimes.distill import load_teacher

    cfg = load_config(None, SMALL)
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        load_teacher(tmp_path, cfg.task)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"task": {"name": "collusion"}}))
    with pytest.raises(ValueError, match="same \\[task\\]"):
        load_teacher(tmp_path, cfg.task)
    with pytest.raises(ValueError, match="distill.teacher"):
        make_regime("distill", context("distill"))
