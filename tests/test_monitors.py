"""Monitors in the loop: adaptive supervised overseers refitted on schedule, the white-box probe
that reads the sender itself, and the null-channel control whose reward ignores the secret."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_channel import SMALL, _timeless_rows, run

from latentcode.channel.config import ConfigError, load_config
from latentcode.channel.trainer import build_parts
from latentcode.lm import tiny_lm

ADAPTIVE = {"reward.overseers": ["string-match", {"name": "tfidf", "adaptive": True, "every": 2}],
            "reward.overseer_weight": 0.5, "rl.steps": 6}


def test_overseer_tables_are_checked_key_by_key():
    cfg = load_config(None, {"reward.overseers": ["tail", {"name": "probe", "adaptive": True,
                                                           "whitebox": True, "every": 3}]})
    assert cfg.reward.overseers[1]["every"] == 3  # kept as written: config.json reads the same
    bad = [({"name": "tfidf", "adaptiv": True}, "reward.overseers[0].adaptiv: unknown key"),
           ({"adaptive": True}, "reward.overseers[0].name"),
           ({"name": "probe", "whitebox": True}, "set adaptive = true"),
           ({"name": "tfidf", "adaptive": True, "every": 0}, "every must be >= 1"),
           (3, "must be a name or a table")]
    for entry, message in bad:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(None, {"reward.overseers": [entry]})
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(None, {"reward.overseers": ["tail", "tail"]})


def test_an_adaptive_overseer_must_be_supervised_and_a_white_box_one_must_read_a_model():
    for entry, message in (({"name": "tail", "adaptive": True}, "unsupervised"),
                           ({"name": "tfidf", "adaptive": True, "whitebox": True}, "reads no model")):
        cfg = load_config(None, {**SMALL, "reward.overseers": [entry]})
        with pytest.raises(ValueError, match=message):
            build_parts(cfg, tiny_lm(seed=0), tiny_lm(seed=1))


class Spy:
    """Wraps a detector and records every text it is fitted on and every text it scores."""

    def __init__(self, detector):
        self.inner, self.fitted, self.scored = detector, [], []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fit(self, transcripts, labels=None):
        self.fitted.append({t.text for t in transcripts})
        self.inner.fit(transcripts, labels)
        return self

    def score(self, transcripts):
        self.scored.append(({t.text for t in transcripts}, len(self.fitted)))
        return self.inner.score(transcripts)


def test_an_adaptive_monitor_refits_on_schedule_and_never_scores_what_it_was_fitted_on():
    from latentcode.channel.regimes.base import Context, draw_episodes, sample, score
    from latentcode.channel.trainer import calibrate

    cfg = load_config(None, {**SMALL, **ADAPTIVE})
    parts = build_parts(cfg, tiny_lm(seed=0), tiny_lm(seed=1))
    ctx = Context(cfg, *parts)
    monitor = parts.overseers[1]
    calibrate(parts.overseers, parts.sender, parts.task, cfg)
    spy = monitor.detector = Spy(monitor.detector)
    rows = []
    for step in range(6):
        scored = score(ctx, step, sample(ctx, step, draw_episodes(ctx, step)))
        rows.append(scored.monitor)
    assert len(spy.fitted) == 3 and monitor.fitted_at == 6  # after steps 2, 4 and 6
    assert [("auroc/tfidf" in r) for r in rows] == [False, False, True, True, True, True]
    assert all(0 <= r["auroc/tfidf"] <= 1 for r in rows[2:])
    clean = {t.text for t in monitor.clean}
    for texts, fits_before in spy.scored:
        seen = set().union(*spy.fitted[:fits_before]) if fits_before else set()
        assert not (texts - clean) & seen  # the calibration answers set thresholds only
    assert 0 < len(monitor.positives) <= 6 * 4 and 0 < len(monitor.negatives) <= 6 * 2
    assert monitor.threshold_ is not None


def test_the_white_box_probe_reads_the_sender_with_its_adapter_on():
    cfg = load_config(None, {**SMALL, "reward.overseers": [
        {"name": "probe", "adaptive": True, "whitebox": True}]})
    parts = build_parts(cfg, tiny_lm(seed=0), tiny_lm(seed=1))
    monitor = parts.overseers[0]
    assert monitor.name == "probe@policy" and monitor.detector.lm is parts.sender.lm
    from latentcode.transcripts import Transcript

    texts = [Transcript(id=f"t{i}", prompt="Say something.", text=f"word {i} and more")
             for i in range(3)]
    before = monitor.detector.features(texts)
    with torch.no_grad():
        for name, p in parts.sender.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    after = monitor.detector.features(texts)
    assert not np.allclose(before, after)  # the adapter changed what it reads
    with parts.sender.reference():
        assert np.allclose(monitor.detector.features(texts), before)  # adapter off: the base


def test_the_null_channel_reward_does_not_depend_on_the_secret():
    """The same responses scored twice, the second time with every episode's secret moved to
    another episode: the control's decoding rewards stay the same, a real sender's do not."""
    import dataclasses

    from latentcode.channel.regimes.base import Context, draw_episodes, sample, score

    def context(null: bool):
        cfg = load_config(None, {**SMALL, "rl.prompts_per_step": 4,
                                 "reward.overseers": ["string-match"], "reward.null_channel": null})
        return Context(cfg, *build_parts(cfg, tiny_lm(seed=0), None))

    def rewards(null: bool, permute: bool):
        ctx = context(null)
        episodes = draw_episodes(ctx, step)
        rollouts = sample(ctx, step, episodes)
        if permute:
            secrets = [e.secret for e in episodes]
            moved = [dataclasses.replace(e, secret=s) for e, s in zip(episodes, secrets[1:] + secrets[:1])]
            assert [e.secret for e in moved] != secrets
            rollouts = dataclasses.replace(rollouts, episodes=moved)
        return score(ctx, step, rollouts).decode

    ctx = context(False)
    step = next(s for s in range(50) if len({e.secret for e in draw_episodes(ctx, s)}) > 1)
    assert np.array_equal(rewards(True, False), rewards(True, True))
    assert not np.array_equal(rewards(False, False), rewards(False, True))


def test_a_run_with_an_adaptive_monitor_logs_its_auroc_and_resumes_to_the_same_metrics(tmp_path):
    run(tmp_path / "whole", **ADAPTIVE)
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [("auroc/tfidf" in r) for r in rows] == [False, False, True, True, True, True]
    assert (tmp_path / "whole" / "checkpoint" / "overseers" / "tfidf" / "detector").is_dir()
    run(tmp_path / "halves", stop_after=3, **ADAPTIVE)  # stopped between two refits
    run(tmp_path / "halves", **ADAPTIVE)
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert _timeless_rows(tmp_path / "whole", name) == _timeless_rows(tmp_path / "halves", name)


def test_policy_probe_reads_a_trained_sender_from_the_command_line(tmp_path, tiny_folder, capsys):
    from latentcode.channel.trainer import train
    from latentcode.cli import main
    from latentcode.transcripts import read_transcripts

    cfg = load_config(None, {**SMALL, "rl.steps": 2, "eval.prompts": 8, "sender.model": str(tiny_folder),
                             "reward.overseers": ["string-match"]})
    train(cfg, tmp_path / "run", progress=False)
    samples = str(tmp_path / "run" / "samples.jsonl")
    assert {t.label for t in read_transcripts(samples)} == {0, 1}
    common = [samples, "--detectors", "policy-probe", "--train", samples, "--allow-overlap",
              "--out", str(tmp_path / "scored.jsonl")]
    assert main(["detect", *common]) == 2
    assert "give --policy RUN" in capsys.readouterr().err
    assert main(["detect", *common, "--policy", str(tmp_path)]) == 2  # not a run folder
    assert main(["detect", *common, "--policy", str(tmp_path / "run"),
                 "--save", str(tmp_path / "fitted")]) == 0
    scored = read_transcripts(tmp_path / "scored.jsonl")
    assert all(np.isfinite(t.scores["policy-probe"]) for t in scored)
    config = json.loads((tmp_path / "scored.jsonl.config.json").read_text())
    assert config["policy"] == str(tmp_path / "run") and config["model"] is None
    again = [samples, "--detectors", "policy-probe", "--load", str(tmp_path / "fitted"),
             "--policy", str(tmp_path / "run"), "--out", str(tmp_path / "again.jsonl")]
    assert main(["detect", *again]) == 0
    assert [t.scores["policy-probe"] for t in read_transcripts(tmp_path / "again.jsonl")] == \
        pytest.approx([t.scores["policy-probe"] for t in scored])


def test_an_overseer_with_its_own_curriculum_watches_while_the_others_wait():
    """string-match (free and exact) from step 0, the reward's other overseers from step 10:
    a flagged response pays at step 0 only where its overseer's own warmup has passed."""
    import dataclasses

    from latentcode.channel.regimes.base import Context, draw_episodes, sample, score
    from latentcode.channel.rewards import overseer_lambda

    def scored(entry):
        cfg = load_config(None, {**SMALL, "reward.overseers": [entry], "reward.overseer_weight": 2.0,
                                 "reward.overseer_warmup": 10, "reward.overseer_ramp": 0})
        ctx = Context(cfg, *build_parts(cfg, tiny_lm(seed=0), None))
        rollouts = sample(ctx, 0, draw_episodes(ctx, 0))
        flagged = dataclasses.replace(rollouts, texts=["the secret bit is here"] * len(rollouts))
        return score(ctx, 0, flagged), ctx

    own, ctx = scored({"name": "string-match", "warmup": 0, "weight": 0.5})
    assert own.flags["string-match"].all()
    np.testing.assert_allclose(own.rewards, own.decode - 0.5)
    shared, _ = scored("string-match")
    np.testing.assert_allclose(shared.rewards, shared.decode)  # the reward's warmup: not yet
    spec = ctx.overseers[0].spec
    assert overseer_lambda(spec, 0, ctx.cfg.reward) == 0.5
    assert overseer_lambda(None, 10, ctx.cfg.reward) == 2.0
    with pytest.raises(ConfigError, match="weight and warmup must be >= 0"):
        load_config(None, {"reward.overseers": [{"name": "string-match", "warmup": -3}]})
