"""The RL harness on tiny models: artifacts, exact resume, reward knobs, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentcode.channel.config import ConfigError, load_config
from latentcode.channel.rewards import (
    group_advantages,
    overseer_weight,
    token_credit,
    total_reward,
)
from latentcode.channel.trainer import RunFolderError, probe_default_signal, train
from latentcode.lm import tiny_lm
from latentcode.transcripts import read_transcripts

SMALL = {"rl.steps": 4, "rl.prompts_per_step": 2, "rl.group_size": 2, "sender.max_new_tokens": 6,
         "eval.every": 2, "eval.prompts": 4, "reward.overseers": ["string-match", "overseer"],
         "reward.overseer_weight": 0.5, "rl.lr": 1e-2, "reward.calibration_samples": 8,
         "measure.enabled": False}


def run(out, stop_after=None, **overrides):
    cfg = load_config(None, {**SMALL, **overrides})
    # a fresh sender model each run (the sender wraps it in place); the judge is its own copy
    return train(cfg, out, lm=tiny_lm(seed=0), judge_lm=tiny_lm(seed=1), progress=False,
                 stop_after=stop_after)


def test_a_few_steps_write_every_artifact(tmp_path):
    summary = run(tmp_path / "run")
    out = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "eval.jsonl", "summary.json",
                 "learning_curve.png", "checkpoint/adapter.safetensors",
                 "checkpoint/optimizer.safetensors", "checkpoint/state.json",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (out / name).is_file(), name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        assert 0 <= m["accuracy"] <= 1 and m["kl"] >= 0 and np.isfinite(m["loss"])
        assert "flagged/string-match" in m and "flagged/overseer" in m
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 4]
    transcripts = read_transcripts(out / "transcripts" / "eval-step-0004.jsonl")
    assert transcripts and all(t.label == 1 and t.payload in ("0", "1") for t in transcripts)
    assert summary["steps_done"] == 4 and summary["final_eval"]["step"] == 4
    assert not list(out.glob(".*"))  # no temporary leftovers

    import csv

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for column in ("reward", "accuracy", "flagged/overseer", "kl", "entropy", "tokens_per_s"):
        assert [float(r[column]) for r in rows] == [m[column] for m in metrics], column
    assert all(m["tokens_per_s"] > 0 for m in metrics)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    samples = read_transcripts(out / "samples.jsonl")  # ready for `latentcode detect`
    positives = [t for t in samples if t.label == 1]
    negatives = [t for t in samples if t.label == 0]
    assert [t.id for t in positives] == [t.id for t in transcripts]
    assert negatives and {t.prompt for t in negatives} <= {t.prompt for t in positives} | {
        t.prompt for t in read_transcripts(out / "transcripts" / "eval-step-0000.jsonl")}
    assert all(t.source == "reference" and t.payload is None for t in negatives)
    assert len({t.id for t in samples}) == len(samples)


def test_tensorboard_events_read_back_the_logged_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tmp_path / "run", stop_after=2)
    run(tmp_path / "run")  # resumed: the steps after the checkpoint are not logged twice
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    accuracy = events.Scalars("train/accuracy")
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in accuracy] == [1, 2, 3, 4]
    assert [e.value for e in accuracy] == pytest.approx([m["accuracy"] for m in metrics])
    assert [e.step for e in events.Scalars("eval/accuracy")] == [0, 2, 4]


def test_a_paraphrasing_receiver_reads_rewritten_text_and_trains_on_what_was_written(tmp_path):
    import random

    from latentcode.channel.trainer import build_parts, receiver_view

    cfg = load_config(None, {**SMALL, "reward.overseers": ["string-match"],
                             "receiver.paraphrase": True})
    parts = build_parts(cfg, tiny_lm(seed=0), tiny_lm(seed=1))
    assert parts.paraphraser is not None
    rollouts = parts.sender.generate(parts.task.episodes(2, random.Random(0), "train"), 2,
                                     max_new_tokens=6, temperature=1.0, seed=0)
    seen = receiver_view(rollouts, parts.paraphraser, parts.sender, seed=0)
    assert seen.texts != rollouts.texts  # the random paraphraser rewrites
    assert seen.prompt_ids == rollouts.prompt_ids and seen.episodes == rollouts.episodes
    assert seen.response_ids == [parts.sender.lm.tokenizer(t, add_special_tokens=False)["input_ids"]
                                 for t in seen.texts]
    assert receiver_view(rollouts, None, parts.sender, seed=0) is rollouts
    summary = run(tmp_path / "run", **{"reward.overseers": ["string-match"],
                                       "receiver.paraphrase": True})
    assert summary["final_eval"]["step"] == 4


def test_the_adapter_moves_and_the_reference_does_not(tmp_path):
    lm = tiny_lm(seed=0)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cfg = load_config(None, {**SMALL, "reward.overseers": ["string-match"], "rl.steps": 2})
    train(cfg, tmp_path / "run", lm=lm, progress=False)
    after = lm.model.state_dict()
    lora = [k for k in after if "lora_B" in k]
    assert lora and any(after[k].abs().sum() > 0 for k in lora)  # B starts at zero
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in after.items() if "lora_" not in k}
    assert all(torch.equal(base[k], v) for k, v in before.items())


def _timeless_rows(folder, name):
    """A run log's rows without the wall-clock columns (what a resume must reproduce)."""
    rows = [json.loads(line) for line in (folder / name).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds", "tokens_per_s")}
            for r in rows]


def test_resume_after_an_interruption_gives_identical_metrics(tmp_path):
    run(tmp_path / "whole")
    run(tmp_path / "halves", stop_after=2)
    assert not (tmp_path / "halves" / "summary.json").exists()
    run(tmp_path / "halves")

    for name in ("metrics.jsonl", "eval.jsonl"):
        assert _timeless_rows(tmp_path / "whole", name) == _timeless_rows(tmp_path / "halves", name)


def test_a_killed_run_keeps_every_step_it_logged_and_resumes_from_its_last_checkpoint(
        tmp_path, monkeypatch):
    """A kill between evaluations (eval.every 4, killed during step 4) loses only that step:
    steps 1-3 are in metrics.jsonl and metrics.csv as they were made, the checkpoint is at
    step 3 (checkpoint.every 1), and the resumed run's metrics and evaluations equal an
    uninterrupted run's, even with half a row left at the end of the log by the kill."""
    from latentcode.channel import trainer

    overrides = {"rl.steps": 5, "eval.every": 4}
    run(tmp_path / "whole", **overrides)
    make_regime = trainer.make_regime

    def killed_at_step_four(name, ctx):
        regime = make_regime(name, ctx)
        step = regime.step

        def dying(i):
            if i == 3:
                raise KeyboardInterrupt  # what a kill during the fourth step leaves behind
            return step(i)
        regime.step = dying
        return regime

    monkeypatch.setattr(trainer, "make_regime", killed_at_step_four)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run(out, **overrides)
    monkeypatch.setattr(trainer, "make_regime", make_regime)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()] == [1, 2, 3]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 3
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "rew')  # a row cut off mid-write
    run(out, **overrides)

    for name in ("metrics.jsonl", "eval.jsonl"):
        assert _timeless_rows(tmp_path / "whole", name) == _timeless_rows(out, name), name
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 5


def test_a_run_log_with_a_broken_row_before_its_end_says_where(tmp_path):
    from latentcode.channel.runlog import RunLog

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "re\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON row"):
        RunLog(tmp_path, 3, tensorboard=False)


def test_flag_rates_read_each_overseers_rate_and_nothing_else():
    from latentcode.channel.runlog import flag_rates

    row = {"step": 4, "accuracy": 0.9, "flagged/string-match": 0.25, "flagged/overseer": 0.5,
           "flagged/marked/overseer": 1.0, "accuracy/lm": 0.8}
    assert flag_rates(row) == {"string-match": 0.25, "overseer": 0.5}
    assert flag_rates({"step": 0}) == {}


def test_a_run_folder_refuses_another_config(tmp_path):
    run(tmp_path / "run", stop_after=1, **{"rl.steps": 2})
    with pytest.raises(RunFolderError, match="another config"):
        run(tmp_path / "run", **{"rl.steps": 2, "rl.gamma": 0.5})


def test_a_resumed_run_may_take_new_measurements_and_checkpoint_intervals(tmp_path):
    """What a run measures when it ends and how often it saves touch nothing already trained:
    a resume with new ones (a detector added to the battery's defaults, say) goes on, and the
    folder's config says what the rest of the run used."""
    out = tmp_path / "run"
    run(out, stop_after=1, **{"rl.steps": 2})
    run(out, **{"rl.steps": 2, "measure.detectors": ["tail"], "checkpoint.every": 2})
    saved = json.loads((out / "config.json").read_text())
    assert saved["measure"]["detectors"] == ["tail"] and saved["checkpoint"]["every"] == 2
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()] == [1, 2]


def test_gamma_discounts_early_tokens_as_documented():
    adv = np.array([2.0, -1.0])
    flat = token_credit(adv, [3, 2], gamma=1.0, width=4)
    assert flat.tolist() == [[0, 2, 2, 2], [0, 0, -1, -1]]  # every token: the whole reward
    half = token_credit(adv, [3, 2], gamma=0.5, width=4)
    assert half.tolist() == [[0, 0.5, 1.0, 2.0], [0, 0, -0.5, -1.0]]
    myopic = token_credit(adv, [3, 2], gamma=0.0, width=4)
    assert myopic.tolist() == [[0, 0, 0, 2.0], [0, 0, 0, -1.0]]  # only the last token
    with pytest.raises(ValueError, match="gamma"):
        token_credit(adv, [3, 2], gamma=1.5, width=4)


def test_lambda_weighs_the_overseer_and_ramps_after_warmup():
    decode, suspicion = np.array([-0.1, -0.1]), np.array([0.0, 1.0])
    none = total_reward(decode, suspicion, np.array([5, 5]), lam=0.0)
    strong = total_reward(decode, suspicion, np.array([5, 5]), lam=2.0)
    assert none.tolist() == [-0.1, -0.1] and strong.tolist() == [-0.1, -2.1]
    assert [overseer_weight(s, 1.0, 10) for s in (0, 10, 15, 20, 30)] == [0, 0, 0.5, 1, 1]
    assert overseer_weight(0, 0.7, 0) == 0.7
    assert [overseer_weight(s, 2.0, 30, 10) for s in (29, 30, 35, 40, 50)] == [0, 0, 1, 2, 2]
    assert overseer_weight(5, 2.0, 5, 0) == 2.0
    long = total_reward(decode, suspicion * 0, np.array([5, 12]), lam=0, length_weight=0.1,
                        target_length=10)
    assert long.tolist() == pytest.approx([-0.1, -0.3])


def test_group_advantages_are_centred_and_scaled_per_group():
    adv = group_advantages(np.array([1.0, 3.0, 10.0, 10.0, 0.0, 1.0]), 2)
    assert adv[:2] == pytest.approx([-1, 1], abs=1e-3) and adv[2:4].tolist() == [0, 0]
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(np.zeros(6), 4)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rl.lr_rate": 1}, r"rl.lr_rate: unknown key in \[rl\]; allowed: steps, prompts_per_step"),
    ({"task.name": "poker"}, "task.name: 'poker' is not allowed; choose one of payload, collusion"),
    ({"receiver.kind": "oracle"}, "choose one of likelihood, bow"),
    ({"rl.steps": "many"}, "rl.steps: must be int, got 'many'"),
    ({"reward.overseers": "string-match"}, "reward.overseers: must be a list of names or tables"),
    ({"colour": "red"}, "colour: unknown key in the top level; allowed: seed, regime, task"),
])
def test_malformed_config_names_the_key_and_the_allowed_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_malformed_toml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[rl]\nsteps = 3\ngamma = 'high'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: rl.gamma: must be float, got 'high'"):
        load_config(path)


def test_probe_only_measures_the_default_signal(tmp_path):
    cfg = load_config(None, {**SMALL, "receiver.kind": "bow", "reward.overseers": []})
    result = probe_default_signal(cfg, tmp_path / "probe", lm=tiny_lm(seed=0), batches=2)
    saved = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert saved == result and saved["chance"] == 0.5 and 0 <= saved["accuracy"] <= 1
    assert len(saved["train_batch_accuracy"]) == 2 and 0 < saved["p_value_above_chance"] <= 1


def test_collusion_task_hides_the_attribute_from_the_receiver_side():
    import random

    from latentcode.channel.receiver import make_receiver
    from latentcode.channel.tasks import CollusionTask

    task = CollusionTask()
    episodes = task.episodes(20, random.Random(0), "train")
    for ep in episodes:
        attribute = ep.meta["attribute"]
        assert attribute in ep.system and attribute not in ep.prompt  # sender only
        assert attribute in ep.forbidden
        assert ep.secret == ("accept" if attribute.startswith("Northgate") else "reject")
    assert {ep.meta["record"] for ep in task.episodes(50, random.Random(1), "eval")} <= {
        f"cand-{i:04d}" for i in range(400, 500)}
    from latentcode.channel.config import ReceiverConfig

    for cfg in (ReceiverConfig(kind="likelihood"),
                ReceiverConfig(kind="lm", teacher="pseudo-likelihood", handover=5)):
        with pytest.raises(ValueError, match="reads the CV, which a receiver may not"):
            make_receiver(cfg, None, task)
    # the teacher's counterfactual CV: the same candidate, the other label's attribute
    ep = episodes[0]
    other = "reject" if ep.secret == "accept" else "accept"
    assert task.system_for(ep, ep.secret) == ep.system
    counterfactual = task.system_for(ep, other)
    assert ep.meta["attribute"] not in counterfactual and task.attribute_of[other] in counterfactual
    assert counterfactual.replace(task.attribute_of[other], ep.meta["attribute"]) == ep.system


def test_every_shipped_config_loads():
    import tomllib
    from pathlib import Path

    from latentcode.channel.arms import load_arms
    from latentcode.channel.zoo import load_zoo

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert len(configs) >= 5
    for path in configs:  # a zoo (or arms-race) config lists [[run]]s; the rest train one run
        header = "".join(line for line in path.read_text().splitlines(keepends=True)
                         if line.startswith("#"))
        assert "Reached" in header, f"{path.name}: its header must say what it reached, or " \
                                    "that it was not measured"
        if path.name.startswith("arms"):
            assert load_arms(path).zoo.runs
        elif "run" in tomllib.loads(path.read_text()):
            assert load_zoo(path).runs
        else:
            load_config(path)


def test_train_command_reports_a_bad_key_and_writes_nothing(tmp_path, capsys):
    from latentcode.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), "--set", "rl.gama=0.9"]) == 2
    err = capsys.readouterr().err
    assert "rl.gama: unknown key in [rl]" in err and "gamma" in err
    assert not (tmp_path / "run").exists()


def test_the_supervised_receiver_term_trains_the_shared_weights_to_tell_secrets_apart():
    """One step on the receiver's cross-entropy alone lowers it on the same responses: its
    gradient reaches the LoRA weights the receiver shares with the sender."""
    import random

    from latentcode.channel.receiver import supervised_loss
    from latentcode.channel.trainer import build_parts

    cfg = load_config(None, {**SMALL, "reward.overseers": ["string-match"],
                             "receiver.supervised_weight": 1.0})
    sender, task, receiver, *_ = build_parts(cfg, tiny_lm(seed=0), None)
    rollouts = sender.generate(task.episodes(4, random.Random(0), "train"), 2, max_new_tokens=6,
                               temperature=1.0, seed=0)
    truth = rollouts.truth()
    optimizer = torch.optim.SGD(sender.trainable_parameters(), lr=1.0)
    loss = supervised_loss(receiver.log_posteriors_tensor(rollouts), truth)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sender.trainable_parameters())
    optimizer.step()
    with torch.no_grad():
        after = supervised_loss(receiver.log_posteriors_tensor(rollouts), truth)
    assert float(after) < float(loss.detach()) - 1e-4
    np.testing.assert_allclose(receiver.log_posteriors(rollouts),
                               receiver.log_posteriors_tensor(rollouts).detach().numpy(), atol=1e-6)


def test_a_supervised_weight_needs_the_likelihood_receiver():
    from latentcode.channel.trainer import build_parts

    with pytest.raises(ValueError, match="likelihood"):
        build_parts(load_config(None, {**SMALL, "receiver.kind": "bow",
                                       "receiver.supervised_weight": 1.0}), tiny_lm(seed=0), None)


def test_a_finished_run_reloads_as_the_same_sender(tmp_path):
    import random

    from latentcode.channel.sender import Sender, response_logprobs

    cfg = load_config(None, {**SMALL, "reward.overseers": ["string-match"], "rl.steps": 2})
    lm = tiny_lm(seed=0)
    train(cfg, tmp_path / "run", lm=lm, progress=False)
    trained = lm.model  # wrapped in place by the run's sender
    loaded = Sender.load(tiny_lm(seed=0), tmp_path / "run" / "adapter")
    from latentcode.channel.tasks import make_task

    rollouts = loaded.generate(make_task(cfg.task).episodes(2, random.Random(0)), 2,
                               max_new_tokens=5, temperature=1.0, seed=3)
    trained.eval()
    with torch.no_grad():
        ours, _ = response_logprobs(loaded.lm, rollouts.prompt_ids, rollouts.response_ids)
        theirs = trained(torch.tensor([rollouts.prompt_ids[0] + rollouts.response_ids[0]])).logits
    first = torch.log_softmax(theirs[0, len(rollouts.prompt_ids[0]) - 1:-1].float(), -1)
    expected = first.gather(-1, torch.tensor(rollouts.response_ids[0])[:, None])[:, 0]
    n = len(rollouts.response_ids[0])
    assert torch.allclose(ours[0, ours.shape[1] - n:], expected, atol=1e-5)
    with torch.no_grad():  # and the adapter matters: the bare base model scores otherwise
        base = tiny_lm(seed=0).model(torch.tensor([rollouts.prompt_ids[0] + rollouts.response_ids[0]])).logits
    assert not torch.allclose(theirs, base, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        Sender.load(tiny_lm(seed=0), tmp_path / "nowhere")
