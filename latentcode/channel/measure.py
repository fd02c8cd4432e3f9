"""Measurements of instrumentality for a trained sender, written into its run folder.

1. *Where the code lives*: the receiver's accuracy when it reads only the first k tokens of
   each held-out response, k = 1..T (``prefix_accuracy``; ``prefix_truth_prob``, the mean
   posterior of the true secret, is the same curve with less noise), and the first k at which it has
   covered half of the way from chance to its full-response accuracy (``half_position``). A
   code planned from the first token is readable early; one that waits for the last tokens is
   not.
2. *Where the policy moved*: the exact KL divergence from the reference at each response
   position, over the full vocabulary (``position_kl``), the reference reading the same input
   with the adapter off.
3. *Capacity*: decoded bits per response, the mutual information between secret and decoded
   secret with a seeded bootstrap 95% interval (``capacity.py``).
4. *Concealment*: every listed detector on the run's ``samples.jsonl`` (the sender's responses
   against the reference's clean answers to the same prompts), fitted on one half of the
   prompts and scored on the other (:mod:`latentcode.battery`), with the ROC report of the
   scores in ``concealment/report``.

``instrumentality.json`` holds the numbers; ``prefix_decodability.png`` and ``position_kl.png``
draw them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..jsonl import write_json
from ..transcripts import Transcript, read_transcripts, write_transcripts
from .capacity import capacity_bits
from .evaluation import eval_rollouts
from .sender import Rollouts, Sender


def truncate(rollouts: Rollouts, k: int, tokenizer) -> Rollouts:
    ids = [r[:k] for r in rollouts.response_ids]
    return dataclasses.replace(rollouts, response_ids=ids,
                               texts=[tokenizer.decode(r, skip_special_tokens=True) for r in ids])


def prefix_posteriors(receiver, rollouts: Rollouts, max_k: int, tokenizer) -> np.ndarray:
    """``[max_k, rows, candidates]`` log-posteriors from the first k tokens, k = 1..max_k. The
    likelihood receiver gives every prefix's exact posterior in one pass; any other receiver
    reads truncated texts."""
    if hasattr(receiver, "prefix_log_posteriors"):
        return receiver.prefix_log_posteriors(rollouts, max_k)
    return np.stack([receiver.log_posteriors(truncate(rollouts, k, tokenizer))
                     for k in range(1, max_k + 1)])


def prefix_accuracy(receiver, rollouts: Rollouts, max_k: int, tokenizer) -> list[float]:
    """Receiver accuracy on the first k tokens, k = 1..max_k."""
    post = prefix_posteriors(receiver, rollouts, max_k, tokenizer)
    return [float((p.argmax(1) == rollouts.truth()).mean()) for p in post]


def half_position(accuracy: Sequence[float], chance: float) -> int | None:
    """First k (1-based) with accuracy >= chance + (final - chance) / 2; None without a code."""
    final = accuracy[-1]
    if final <= chance:
        return None
    target = chance + (final - chance) / 2
    return next(k + 1 for k, a in enumerate(accuracy) if a >= target)


@torch.no_grad()
def position_kl(sender: Sender, rollouts: Rollouts, max_k: int, batch_size: int = 16) -> list[float | None]:
    """Mean exact KL(policy || reference) in nats at response positions 1..max_k (None where no
    response is that long)."""
    from ..prefix import continuation_logits

    total, count = np.zeros(max_k), np.zeros(max_k)
    sender.model.eval()
    for start in range(0, len(rollouts), batch_size):
        prompts = rollouts.prompt_ids[start:start + batch_size]
        responses = rollouts.response_ids[start:start + batch_size]
        keep = [i for i, r in enumerate(responses) if r]
        if not keep:
            continue
        prompts, responses = [prompts[i] for i in keep], [responses[i] for i in keep]
        policy, _ = continuation_logits(sender.lm, prompts, responses)
        with sender.reference():
            reference, _ = continuation_logits(sender.lm, prompts, responses)
        logp, logq = torch.log_softmax(policy.double(), -1), torch.log_softmax(reference.double(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)  # [rows, width]
        width = kl.shape[1]
        for i, r in enumerate(responses):
            n = min(len(r), max_k)
            total[:n] += kl[i, width - len(r):width - len(r) + n].numpy()
            count[:n] += 1
    return [float(t / c) if c else None for t, c in zip(total, count, strict=True)]


def prompt_half(prompt: str) -> str:
    """``train`` or ``test``, by a hash of the prompt: both sides of a prompt land together."""
    return "train" if hashlib.sha256(prompt.encode()).digest()[0] % 2 == 0 else "test"


def concealment(samples: Sequence[Transcript], detectors: Sequence[str], lm, out: Path,
                seed: int = 0) -> dict:
    """AUROC of each detector, policy against matched clean, split by prompt; writes the scored
    test half and its report into ``out``."""
    from ..battery import NULL, pooled_test, run_battery, with_scores
    from ..report import build_report

    source = "sender"
    data: dict = {(NULL, "train"): [], (NULL, "test"): [], (source, "train"): [],
                  (source, "test"): []}
    for t in samples:
        data[(NULL if t.label == 0 else source), prompt_half(t.prompt)].append(
            dataclasses.replace(t, source=NULL if t.label == 0 else source))
    for half in ("train", "test"):  # matched prompts (a blank clean answer drops its prompt)
        shared = {t.prompt for t in data[NULL, half]} & {t.prompt for t in data[source, half]}
        for side in (NULL, source):
            data[side, half] = [t for t in data[side, half] if t.prompt in shared]
    small = [k for k, v in data.items() if len(v) < 2]
    if small:
        raise ValueError(f"concealment needs at least 2 transcripts in each of clean/sender x "
                         f"train/test halves; {small[0]} has {len(data[small[0]])}: raise eval.prompts")
    auroc, pooled, _ = run_battery(data, list(detectors), lm)
    out.mkdir(parents=True, exist_ok=True)
    scored = out / "scored-test.jsonl"
    write_transcripts(scored, with_scores(pooled_test(data), pooled))
    build_report([scored], out / "report", n_boot=500, seed=seed)
    return {name: cells[source] for name, cells in auroc.items()}


def run_base_model(run: str | Path, device=None):
    """The base model a run's sender was trained from (its config's ``sender.model``)."""
    from ..lm import load_lm

    cfg = json.loads((Path(run) / "config.json").read_text())
    return load_lm(cfg.get("sender", {}).get("model") or None, device=device)


def run_sender(run: str | Path, device=None) -> Sender:
    """A finished run's sender: its base model with the run's ``adapter/`` on."""
    return Sender.load(run_base_model(run, device), Path(run) / "adapter")


def load_run(run: str | Path, sender: Sender | None = None, receiver=None):
    """A finished run's config, task, sender (reloaded from ``adapter/`` unless given),
    receiver (as the run ended) and evaluation condition."""
    from .config import from_dict
    from .runlog import finished_run_config
    from .tasks import make_task

    run = Path(run)
    cfg = from_dict(finished_run_config(run))
    task = make_task(cfg.task)
    if sender is None:
        sender = run_sender(run)
    if receiver is None:
        from .receiver import make_receiver

        receiver = make_receiver(cfg.receiver, sender, task, seed=cfg.seed)
        state = run / "checkpoint" / "state.json"
        if hasattr(receiver, "load_state") and state.is_file():
            receiver.load_state(json.loads(state.read_text())["receiver"])
        if hasattr(receiver, "load"):  # the LM receiver's own weights, as the run ended
            if not (run / "receiver").is_dir():
                raise FileNotFoundError(f"{run}: no receiver/ folder (a finished run with "
                                        "receiver.kind = \"lm\" writes it)")
            receiver.load(run / "receiver")
        if cfg.regime == "distill":  # the teacher's receiver reads the student
            from .regimes.distill import load_teacher, teacher_receiver

            receiver = teacher_receiver(load_teacher(cfg.distill.teacher, cfg.task), task, sender)
    condition = ""
    if cfg.regime == "conditioned":
        from .regimes.conditioned import return_tag

        condition = return_tag(cfg.conditioned.buckets - 1)
    return cfg, task, sender, receiver, condition


def measure_run(run: str | Path, *, detectors: Sequence[str] | None = None, n_boot: int = 1000,
                sender: Sender | None = None, receiver=None, detector_lm=None) -> dict:
    """Every measurement for a finished run folder; writes ``instrumentality.json`` and the
    figures. ``sender``/``receiver`` default to the run's own (reloaded from ``adapter/``)."""
    from ..lm import load_lm

    run = Path(run)
    cfg, task, sender, receiver, condition = load_run(run, sender, receiver)
    rollouts = eval_rollouts(cfg, sender, task, cfg.rl.steps, condition)  # the final evaluation's
    max_k = cfg.sender.max_new_tokens
    chance = 1 / len(rollouts.episodes[0].candidates)
    truth = rollouts.truth()
    reader = getattr(receiver, "decoder", receiver)  # a hand-over's: never a privileged teacher
    post = prefix_posteriors(reader, rollouts, max_k, sender.lm.tokenizer)
    accuracy = [float((p.argmax(1) == truth).mean()) for p in post]
    # the posterior of the true secret: the same curve with less noise than 0/1 accuracy (its
    # expectation cannot fall as k grows when the receiver is the exact posterior)
    truth_prob = [float(np.exp(p[np.arange(len(truth)), truth]).mean()) for p in post]
    decoded = reader.log_posteriors(rollouts).argmax(1)
    result = {
        "run": str(run), "regime": cfg.regime, "gamma": cfg.rl.gamma, "seed": cfg.seed,
        "n": len(rollouts), "chance": chance,
        "prefix_accuracy": accuracy, "prefix_truth_prob": truth_prob,
        "half_position": half_position(accuracy, chance),
        "position_kl": position_kl(sender, rollouts, max_k),
        "capacity": capacity_bits(truth, decoded, candidates=rollouts.episodes[0].candidates,
                                  n_boot=n_boot, seed=cfg.seed),
        "accuracy": float((decoded == truth).mean()),
    }
    if detectors:
        samples = read_transcripts(run / "samples.jsonl")
        lm = detector_lm or load_lm(cfg.sender.model or None)  # detectors read the bare model
        try:
            cells = concealment(samples, detectors, lm, run / "concealment", seed=cfg.seed)
        except ValueError as err:  # too few held-out answers: the rest of the run still counts
            warnings.warn(f"{run}: concealment not measured: {err}", stacklevel=2)
            result["concealment_error"] = str(err)
        else:
            result["concealment"] = cells
            best = max(cells, key=lambda d: cells[d]["auroc"])
            result["best_detector"], result["best_auroc"] = best, cells[best]["auroc"]
    write_json(run / "instrumentality.json", result)
    from .curves import plot_position_curves

    plot_position_curves([result], run / "prefix_decodability.png", "prefix_accuracy",
                         "receiver accuracy on the first k tokens", dashed="prefix_truth_prob",
                         dashed_label="posterior of the true secret (dashed)")
    plot_position_curves([result], run / "position_kl.png", "position_kl",
                         "KL(policy || reference) at position k, nats")
    return result
