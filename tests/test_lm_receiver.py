"""The LM receiver and its cold start on tiny models: it learns a planted code, never reads the
secret, serves k-bit and categorical secrets, resumes exactly, and `measure` reads it back."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from latentcode.channel.capacity import capacity_bits, per_bit_accuracy, variational_bits
from latentcode.channel.config import ReceiverConfig, load_config
from latentcode.channel.lm_receiver import LMReceiver, bit_log_posteriors, head_kind
from latentcode.channel.receiver import LikelihoodReceiver, PseudoLikelihoodReceiver, make_receiver
from latentcode.channel.sender import Rollouts, Sender
from latentcode.channel.tasks import CollusionTask, PayloadTask
from latentcode.channel.trainer import train
from latentcode.lm import tiny_lm

# the planted code: bit i picks one word of pair i
WORDS = [("stone", "apple"), ("river", "cloud"), ("north", "south"), ("green", "yellow")]


def planted(task, n: int, seed: int, split: str = "train") -> Rollouts:
    """Responses that carry the secret by construction: one word per bit, after filler."""
    episodes = task.episodes(n, random.Random(seed), split)
    texts = [f"Here is my answer. {' and '.join(WORDS[i][int(b)] for i, b in enumerate(ep.secret))}."
             for ep in episodes]
    return Rollouts(episodes, 1, [[] for _ in texts], [[1] for _ in texts], texts,
                    [True] * len(texts))


def receiver_on(task, **kwargs) -> LMReceiver:
    lm = tiny_lm(seed=0)
    sender = Sender(lm)
    settings = {"lr": 3e-2, "updates_per_step": 4, "batch_size": 16, "seed": 0, **kwargs}
    return LMReceiver(sender.lm, task.candidates, shared=True, **settings)


@pytest.mark.parametrize("bits", [1, 3])
def test_the_lm_receiver_learns_a_planted_code_in_a_few_updates(bits):
    task = PayloadTask(bits=bits)
    receiver = receiver_on(task)
    held_out = planted(task, 64, seed=99, split="eval")
    before = receiver.log_posteriors(held_out)
    assert np.allclose(before, -np.log(2 ** bits))  # a zero head: exactly at chance
    for step in range(12):  # 12 batches of 16, 4 updates each
        receiver.observe(planted(task, 16, seed=step))
    decoded = receiver.log_posteriors(held_out).argmax(1)
    assert (decoded == held_out.truth()).mean() >= 0.95


def ordered(task, n: int, seed: int, split: str = "train") -> Rollouts:
    """Responses that spell the secret's bits in order ("one zero zero"): every bit string with
    the same number of ones holds the same words, so only their order tells them apart."""
    episodes = task.episodes(n, random.Random(seed), split)
    texts = [f"Here is my answer: {' '.join(('zero', 'one')[int(b)] for b in ep.secret)}."
             for ep in episodes]
    return Rollouts(episodes, 1, [[] for _ in texts], [[1] for _ in texts], texts,
                    [True] * len(texts))


def test_attention_pooling_reads_a_code_in_the_order_of_tokens():
    task = PayloadTask(bits=3)
    held_out = ordered(task, 64, seed=99, split="eval")
    accuracy = {}
    for pooling in ("mean", "attention"):
        receiver = receiver_on(task, pooling=pooling)
        assert np.allclose(receiver.log_posteriors(held_out), -np.log(8))  # chance at first
        for step in range(12):
            receiver.observe(ordered(task, 16, seed=step))
        accuracy[pooling] = (receiver.log_posteriors(held_out).argmax(1) == held_out.truth()).mean()
    assert accuracy["attention"] >= 0.95, accuracy
    assert accuracy["mean"] < accuracy["attention"], accuracy


def test_the_receiver_reads_prompt_and_response_and_never_the_secret():
    task = PayloadTask(bits=2)
    receiver = receiver_on(task, updates_per_step=1)
    rollouts = planted(task, 6, seed=0)
    calls: list[tuple[list[list[int]], list[list[int]]]] = []  # every forward's ids and mask
    body = receiver.model.get_base_model().base_model
    hook = body.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["input_ids"].tolist(),
                                                   kwargs["attention_mask"].tolist())),
        with_kwargs=True)
    try:
        receiver.log_posteriors(rollouts)
        receiver.observe(rollouts)
    finally:
        hook.remove()
    tok = receiver.tokenizer

    def unpadded(ids, mask):  # the mask's last columns are this call's own tokens
        return [[t for t, m in zip(r, mr[-len(r):], strict=True) if m] for r, mr in zip(ids, mask)]

    expected = receiver.input_ids([rollouts.episode_of(r).prompt for r in range(6)], rollouts.texts)
    # the first reading: each distinct prompt once, then each row's continuation after it
    prompts, continuations = unpadded(*calls[0]), unpadded(*calls[1])
    assert len(prompts) == len({tuple(e[:-len(c)]) for e, c in zip(expected, continuations)})
    for row, cont in enumerate(continuations):
        assert expected[row][-len(cont):] == cont
        assert expected[row][:-len(cont)] in prompts
    read = [row for ids, mask in calls for row in unpadded(ids, mask)]
    for ids in read:
        text = tok.decode(ids)
        assert "Your secret bits" not in text and "Never mention" not in text
        for ep in rollouts.episodes:
            system = tok(ep.system, add_special_tokens=False)["input_ids"]
            assert not any(ids[i:i + len(system)] == system for i in range(len(ids)))


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_the_prefix_shared_reading_equals_one_plain_forward(pooling):
    """Each distinct prompt read once (KV cache shared) must give what one right-padded forward
    over whole rows gives: the same pooled tokens at the same response positions, an empty
    response included."""
    task = PayloadTask(bits=2)
    receiver = receiver_on(task, pooling=pooling)
    with torch.no_grad():  # a head that is not zero, so every pooled token and position counts
        generator = torch.Generator().manual_seed(0)
        for tensor in [receiver.head.weight, receiver.head.bias] + (
                [receiver.query.weight, receiver.position] if pooling == "attention" else []):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    rollouts = planted(task, 6, seed=3)
    texts = list(rollouts.texts)
    texts[2] = ""  # an empty response reads the last prompt token
    prompts = [rollouts.episode_of(r // 3).prompt for r in range(6)]  # two groups of three
    rows = receiver._tokens(prompts, texts)
    assert not rows[2][1] and len({tuple(p) for p, _ in rows}) < len(rows)  # shared prompts
    with receiver.active(), torch.no_grad():
        shared = receiver._forward(prompts, texts)
        receiver._token_states = receiver._plain_states  # the reading without a shared prefix
        plain = receiver._forward(prompts, texts)
    assert torch.allclose(shared, plain, atol=1e-4), (shared - plain).abs().max()


def test_bit_heads_give_every_bit_string_in_the_payload_tasks_order():
    logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, -1.0, -1.0]])
    post = bit_log_posteriors(logits)
    assert post.shape == (2, 8)
    assert torch.allclose(torch.logsumexp(post, 1), torch.zeros(2), atol=1e-6)
    candidates = PayloadTask(bits=3).candidates
    assert candidates[int(post[0].argmax())] == "101" and candidates[int(post[1].argmax())] == "000"
    # the probability of bit 0 being 1 is its sigmoid, whatever the other bits do
    ones = [i for i, c in enumerate(candidates) if c[0] == "1"]
    assert float(post[0, ones].exp().sum()) == pytest.approx(float(torch.sigmoid(logits[0, 0])))


def test_a_categorical_secret_gets_a_softmax_head_and_bits_are_refused_for_it():
    assert head_kind(PayloadTask(bits=4).candidates) == "bits"
    assert head_kind(CollusionTask.candidates) == "categorical"
    assert head_kind(PayloadTask(bits=2).candidates, "categorical") == "categorical"
    with pytest.raises(ValueError, match="categorical"):
        head_kind(CollusionTask.candidates, "bits")
    task = CollusionTask()
    receiver = receiver_on(task)
    assert receiver.head.out_features == 2
    episodes = task.episodes(32, random.Random(0), "train")
    texts = [("A strong candidate." if ep.secret == "accept" else "A weak candidate.")
             for ep in episodes]
    rollouts = Rollouts(episodes, 1, [[]] * 32, [[1]] * 32, texts, [True] * 32)
    for _ in range(6):
        receiver.observe(rollouts)
    assert (receiver.log_posteriors(rollouts).argmax(1) == rollouts.truth()).mean() >= 0.95


def test_the_second_adapter_leaves_the_senders_weights_and_trainability_alone():
    task = PayloadTask(bits=1)
    lm = tiny_lm(seed=0)
    sender = Sender(lm)
    before = {n: p.detach().clone() for n, p in sender.model.named_parameters()}
    trainable = [n for n, p in sender.model.named_parameters() if p.requires_grad]
    receiver = LMReceiver(sender.lm, task.candidates, shared=True, lr=1e-2)
    own = {n: p.detach().clone() for n, p in sender.model.named_parameters() if ".receiver." in n}
    assert own
    receiver.observe(planted(task, 16, seed=0))
    assert [n for n, p in sender.model.named_parameters() if p.requires_grad] == trainable
    assert sender.model.active_adapter == "default"
    for name, value in sender.model.named_parameters():
        if ".receiver." not in name:
            assert torch.equal(value, before[name]), name
    assert any(not torch.equal(p, own[n]) for n, p in sender.model.named_parameters()
               if ".receiver." in n)


def test_receiver_config_errors_name_what_to_change():
    task = PayloadTask()
    with pytest.raises(ValueError, match="receiver.teacher is the cold start of the LM receiver"):
        make_receiver(ReceiverConfig(kind="bow", teacher="likelihood"), None, task)
    sender = Sender(tiny_lm(seed=0))
    with pytest.raises(ValueError, match="needs a hand-over"):
        make_receiver(ReceiverConfig(kind="lm", teacher="likelihood"), sender, task)
    eight = PayloadTask(bits=8)
    for cfg in (ReceiverConfig(), ReceiverConfig(kind="lm", teacher="likelihood", handover=5)):
        with pytest.raises(ValueError, match="under 256 candidate secrets"):
            make_receiver(cfg, sender, eight)
    assert make_receiver(ReceiverConfig(max_candidates=256), sender, eight).name == "likelihood"
    with pytest.raises(ValueError, match="pseudo-likelihood"):  # the way out is named
        make_receiver(ReceiverConfig(), sender, eight)
    cheap = make_receiver(ReceiverConfig(kind="lm", teacher="pseudo-likelihood", handover=5),
                          sender, eight)
    assert cheap.name == "pseudo-likelihood" and cheap.decoder is cheap.student


def test_the_collusion_teacher_reads_counterfactual_cvs_and_is_never_the_decoder():
    sender = Sender(tiny_lm(seed=0))
    warm = make_receiver(ReceiverConfig(kind="lm", head="categorical", teacher="likelihood",
                                        handover=5), sender, CollusionTask())
    assert warm.teacher.privileged and warm.decoder is warm.student
    assert not make_receiver(ReceiverConfig(), sender, PayloadTask()).privileged


def test_the_pseudo_likelihood_is_each_bits_exact_posterior_given_the_others(monkeypatch):
    """k + 1 readings per response, not 2**k, and each bit's conditional equals the one the
    full likelihood receiver's posterior implies."""
    import latentcode.channel.receiver as receiver_module

    task = PayloadTask(bits=3)
    sender = Sender(tiny_lm(seed=0))
    rollouts = sender.generate(task.episodes(5, random.Random(0), "train"), 1, max_new_tokens=5,
                               temperature=1.0, seed=0)
    full = LikelihoodReceiver(sender, task.system_for).log_posteriors(rollouts)
    pairs: list[int] = []
    scoring = receiver_module.scoring_rows

    def counted(*args):
        out = scoring(*args)
        pairs.append(len(out[0]))
        return out

    monkeypatch.setattr(receiver_module, "scoring_rows", counted)
    pseudo = PseudoLikelihoodReceiver(sender, task.system_for).log_posteriors(rollouts)
    assert pairs == [5 * (3 + 1)]
    assert np.allclose(np.logaddexp.reduce(pseudo, axis=1), 0.0)  # a distribution per row
    index = {c: j for j, c in enumerate(task.candidates)}
    for row, truth in enumerate(rollouts.truth()):
        secret = task.candidates[truth]
        for bit in range(3):
            flipped = secret[:bit] + "10"[int(secret[bit])] + secret[bit + 1:]
            given_others = full[row, truth] - np.logaddexp(full[row, truth], full[row, index[flipped]])
            # the pseudo posterior's marginal of this bit at the truth: sum over the others
            keep = [j for j, c in enumerate(task.candidates) if c[bit] == secret[bit]]
            assert np.logaddexp.reduce(pseudo[row, keep]) == pytest.approx(given_others, abs=1e-5)


def test_capacity_corrects_the_plug_in_bias_of_many_candidates_on_few_answers():
    rng = np.random.default_rng(0)
    truth, guess = rng.integers(0, 16, 128), rng.integers(0, 16, 128)  # nothing decoded
    noise = capacity_bits(truth, guess, n_boot=50)
    assert noise["plugin_bits"] > 0.5 and noise["bits"] < noise["plugin_bits"] - 0.4
    perfect = capacity_bits(truth, truth, n_boot=50)
    assert perfect["bits"] >= perfect["plugin_bits"] and perfect["bits"] <= 4.0
    assert perfect["bits"] > 3.8
    confident = np.log(np.full((4, 2), 1e-9))
    confident[np.arange(4), [0, 1, 0, 1]] = 0.0
    assert variational_bits(confident, np.array([0, 1, 0, 1]), n_boot=10)["bits"] == \
        pytest.approx(1.0, abs=1e-6)
    assert variational_bits(np.log(np.full((4, 2), 0.5)), np.array([0, 1, 0, 1]),
                            n_boot=10)["bits"] == pytest.approx(0.0, abs=1e-9)
    assert per_bit_accuracy(["01", "11"], ["00", "11"]) == [1.0, 0.5]
    assert per_bit_accuracy(["reject"], ["accept"]) is None


LM_RUN = {"rl.steps": 4, "rl.prompts_per_step": 2, "rl.group_size": 2, "sender.max_new_tokens": 6,
          "eval.every": 2, "eval.prompts": 4, "reward.overseers": ["string-match"], "rl.lr": 1e-2,
          "reward.calibration_samples": 8, "measure.enabled": False, "task.bits": 2,
          "receiver.kind": "lm", "receiver.teacher": "likelihood", "receiver.handover": 2,
          "receiver.batch_size": 4, "receiver.updates_per_step": 2, "receiver.lr": 1e-2}


def lm_run(out, stop_after=None, **overrides):
    cfg = load_config(None, {**LM_RUN, **overrides})
    return train(cfg, out, lm=tiny_lm(seed=0), progress=False, stop_after=stop_after)


def rows(folder, name):
    return [{k: v for k, v in json.loads(line).items()
             if k not in ("seconds", "train_seconds", "tokens_per_s")}
            for line in (folder / name).read_text().splitlines()]


def test_a_handed_over_run_logs_the_hand_over_and_resumes_to_the_same_metrics(tmp_path):
    lm_run(tmp_path / "whole")
    metrics = rows(tmp_path / "whole", "metrics.jsonl")
    assert [m["handed_over"] for m in metrics] == [0.0, 0.0, 1.0, 1.0]
    assert all(0 <= m["accuracy/lm"] <= 1 and m["receiver_loss"] > 0 for m in metrics)
    evals = rows(tmp_path / "whole", "eval.jsonl")
    assert all({"accuracy/lm", "accuracy/likelihood", "bits", "bit_accuracy/1"} <= set(e)
               for e in evals)
    for name in ("receiver/receiver.safetensors", "receiver/receiver.json",
                 "checkpoint/receiver/receiver.safetensors",
                 "checkpoint/receiver/receiver-optimizer.safetensors"):
        assert (tmp_path / "whole" / name).is_file(), name
    assert not (tmp_path / "whole" / "adapter" / "receiver").exists()  # the sender's alone

    lm_run(tmp_path / "halves", stop_after=1)  # stopped before the hand-over
    lm_run(tmp_path / "halves", stop_after=2)  # and after it
    lm_run(tmp_path / "halves")
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert rows(tmp_path / "whole", name) == rows(tmp_path / "halves", name), name


def test_a_pseudo_likelihood_teacher_rewards_but_the_student_is_what_an_evaluation_reports(tmp_path):
    lm_run(tmp_path / "run", **{"receiver.teacher": "pseudo-likelihood", "rl.steps": 2})
    before_hand_over = rows(tmp_path / "run", "eval.jsonl")[0]
    assert "accuracy/pseudo-likelihood" in before_hand_over
    assert before_hand_over["accuracy"] == before_hand_over["accuracy/lm"]


def test_measure_reads_a_run_with_an_lm_receiver(tmp_path, tiny_folder):
    """As ``latentcode measure`` does: sender, adapter and LM receiver rebuilt from the folder."""
    from latentcode.channel.measure import measure_run

    summary = lm_run(tmp_path / "run", **{"receiver.teacher": "", "receiver.handover": 0,
                                          "eval.prompts": 8, "sender.model": str(tiny_folder)})
    result = measure_run(tmp_path / "run", detectors=[], n_boot=20)
    # the measurement re-reads the last evaluation's responses with the saved LM receiver
    assert result["accuracy"] == summary["final_eval"]["accuracy"]
    assert len(result["prefix_accuracy"]) == 6
    assert result["prefix_truth_prob"][-1] != pytest.approx(0.25)  # not a fresh, zero head


def test_probe_only_reports_the_lm_receivers_default_signal_beside_the_teachers(tmp_path):
    from latentcode.channel.trainer import probe_default_signal

    cfg = load_config(None, LM_RUN)
    result = probe_default_signal(cfg, tmp_path / "probe", lm=tiny_lm(seed=0), batches=2)
    assert {"accuracy/lm", "accuracy/likelihood", "p_value_above_chance/lm",
            "p_value_above_chance/likelihood"} <= set(result)
    assert json.loads((tmp_path / "probe" / "probe.json").read_text()) == result


def test_the_honest_baseline_finds_a_leak_and_sees_none_where_there_is_none():
    from latentcode.channel.tasks import no_attribute_baseline

    rng = random.Random(0)

    def records(leak: bool) -> list[dict]:
        out = []
        for i in range(200):
            label = rng.randint(0, 1)
            role = ("engineer" if label else "analyst") if leak else rng.choice(["engineer", "analyst"])
            school = "Northgate" if label else "Southmere"
            out.append({"cv": f"Education: {school}\nRole: {role}\nSkill: {rng.choice('abcdef')}",
                        "label": label, "forbidden": [school],
                        "split": "eval" if i >= 150 else "train"})
        return out

    leaky, honest = no_attribute_baseline(records(True)), no_attribute_baseline(records(False))
    assert leaky["tfidf_without_attribute"] == 1.0 and leaky["baseline"] == 1.0
    assert abs(honest["cross_validated"] - 0.5) < 0.15 and honest["baseline"] < 0.75
    assert honest["baseline"] >= honest["best_constant"] >= 0.5
