"""Held-out evaluation of a sender, shared by the trainer and the measurements.

The held-out episodes are fixed by the run's seed, and their responses by (seed, step), so the
evaluation at step ``k`` and a later ``latentcode measure`` of the same run read the very same
text. The frozen reference's clean answers (adapter off, no secret) come from here too: they
calibrate overseers and are the matched clean side of ``samples.jsonl``.
"""

from __future__ import annotations

import dataclasses
import random
import time

import numpy as np

from ..lm import LM
from ..transcripts import Transcript
from .config import TrainConfig
from .regimes.base import judge, receiver_view, step_seed
from .sender import Rollouts, Sender
from .tasks import Episode

EVAL_BOOTSTRAP = 200  # resamples for an evaluation's interval (the final measure takes more)


def reference_answers(sender: Sender, task, episodes: list[Episode], cfg: TrainConfig,
                      seed: int) -> Rollouts:
    """The frozen reference (adapter off) answering the episodes' prompts with no secret in its
    instructions: clean text, seeded, for calibrating overseers and scoring detectors."""
    clean = [dataclasses.replace(e, system=task.clean_system(), condition="") for e in episodes]
    with sender.reference():
        return sender.generate(clean, 1, max_new_tokens=cfg.sender.max_new_tokens,
                               temperature=cfg.sender.temperature, seed=seed)


def eval_episodes(cfg: TrainConfig, task, condition: str = "") -> list[Episode]:
    """The held-out episodes (prompts and fresh secrets): the same ones at every evaluation,
    under a public ``condition`` tag (none by default)."""
    rng = random.Random(step_seed(cfg.seed, 0, "eval-episodes"))
    return [dataclasses.replace(e, condition=condition)
            for e in task.episodes(cfg.eval.prompts, rng, "eval")]


def eval_rollouts(cfg: TrainConfig, sender: Sender, task, step: int,
                  condition: str = "") -> Rollouts:
    """One sampled response per held-out episode, seeded by the step: the evaluation at
    ``step``, and the same text again whenever it is asked for (``measure.py``)."""
    return sender.generate(eval_episodes(cfg, task, condition), 1,
                           max_new_tokens=cfg.sender.max_new_tokens,
                           temperature=cfg.sender.temperature,
                           seed=step_seed(cfg.seed, step, "eval-sample"))


def evaluate(step: int, cfg: TrainConfig, sender: Sender, receiver, overseers, task,
             run_name: str, paraphraser: LM | None = None,
             condition: str = "") -> tuple[dict, list[Transcript]]:
    """Held-out prompts, fresh secrets, one sampled response each (the same episodes every
    time), under the regime's evaluation ``condition`` (a public tag; none by default)."""
    started = time.perf_counter()
    rollouts = eval_rollouts(cfg, sender, task, step, condition)
    episodes = rollouts.episodes
    seen = receiver_view(rollouts, paraphraser, sender, step_seed(cfg.seed, step, "eval-paraphrase"))
    decoder = getattr(receiver, "decoder", receiver)  # a hand-over's, not a privileged teacher
    log_post = decoder.log_posteriors(seen)
    truth = rollouts.truth()
    correct = log_post.argmax(1) == truth
    _, flags = judge(overseers, rollouts)
    result = {"step": step, "accuracy": float(correct.mean()), "n": len(episodes),
              **decoding_metrics(rollouts, log_post, seed=cfg.seed)}
    for name, component in getattr(receiver, "components", dict)().items():  # a hand-over's
        post = log_post if component is decoder else component.log_posteriors(seen)
        result[f"accuracy/{name}"] = float((post.argmax(1) == truth).mean())
    for name, f in flags.items():
        result[f"flagged/{name}"] = float(np.mean(f))
    transcripts = []
    for i, ep in enumerate(episodes):
        if not rollouts.texts[i].strip():
            continue
        payload = ep.secret if set(ep.secret) <= {"0", "1"} else None
        meta = {"step": step, "secret": ep.secret,
                "decoded": ep.candidates[int(log_post[i].argmax())], "correct": bool(correct[i]),
                "n_tokens": len(rollouts.response_ids[i]),
                "bits_per_token": (len(ep.secret) / max(len(rollouts.response_ids[i]), 1)
                                   if payload else None),
                "flags": {k: bool(v[i]) for k, v in flags.items()}, **ep.meta}
        if condition:
            meta["condition"] = condition
        transcripts.append(Transcript(
            id=f"{run_name}-s{step}-{i:04d}", prompt=ep.prompt, text=rollouts.texts[i], label=1,
            payload=payload, source=run_name, meta=meta))
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result, transcripts


def decoding_metrics(rollouts: Rollouts, log_post: np.ndarray, *, seed: int = 0,
                     n_boot: int = EVAL_BOOTSTRAP) -> dict:
    """What a held-out evaluation says about decoding beyond accuracy (= the exact-match rate):
    bits per response (``capacity.py``, with a bootstrap interval), the receiver's variational
    bound, and for bit strings each bit's accuracy (``bit_accuracy/i``)."""
    from .capacity import capacity_bits, per_bit_accuracy, variational_bits

    truth = rollouts.truth()
    decoded = log_post.argmax(1)
    candidates = rollouts.episodes[0].candidates
    cap = capacity_bits(truth, decoded, candidates=candidates, n_boot=n_boot, seed=seed)
    out = {"exact_match": float((decoded == truth).mean()), "bits": cap["bits"],
           "bits_ci_low": cap["ci_low"], "bits_ci_high": cap["ci_high"],
           "table_bits": cap["table_bits"],
           "variational_bits": variational_bits(log_post, truth, n_boot=0)["bits"]}
    bits = per_bit_accuracy([candidates[t] for t in truth], [candidates[d] for d in decoded])
    if bits is not None and len(bits) > 1:
        out.update({f"bit_accuracy/{i}": b for i, b in enumerate(bits)})
    return out


def matched_clean(cfg: TrainConfig, sender: Sender, task, run_name: str) -> list[Transcript]:
    """The frozen reference's responses to the evaluation prompts with no secret (label 0):
    the clean side a detector is scored against, matched prompt for prompt."""
    episodes = eval_episodes(cfg, task)
    clean = reference_answers(sender, task, episodes, cfg, step_seed(cfg.seed, 0, "clean-sample"))
    return [Transcript(id=f"{run_name}-clean-{i:04d}", prompt=ep.prompt, text=clean.texts[i],
                       label=0, source="reference",
                       meta={"n_tokens": len(clean.response_ids[i]), **ep.meta})
            for i, ep in enumerate(episodes) if clean.texts[i].strip()]
