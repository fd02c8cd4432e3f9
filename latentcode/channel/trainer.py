"""The training loop of a hiding policy, readable top to bottom (after cleanrl).

Each step spends one budget of samples and reward calls: draw episodes (cover prompt +
secret), sample a group of responses per episode from the sender, let the receiver name the
secret from prompt and response alone, ask the overseers how suspicious each response is, and
update the sender. How the update is made is the *regime* (``regime`` in the config,
``latentcode/channel/regimes/``): ``rl`` turns decode reward minus overseer penalty into
group-relative advantages with per-token discounted credit and takes one policy-gradient step
with a KL penalty to the frozen reference (the same weights, adapter off).

A run writes one folder: ``config.json``, ``metrics.jsonl`` (one line per step),
``metrics.csv`` (the same rows), ``tensorboard/``, ``eval.jsonl`` (held-out prompts every
``eval.every`` steps) with the evaluated transcripts in ``transcripts/``, ``checkpoint/``
(adapter, optimizer, receiver history: resumable), and at the end ``adapter/`` (the final LoRA
weights, which are also the likelihood receiver's), ``samples.jsonl`` (the last evaluation's
responses, label 1, beside the frozen reference's responses to the same prompts with no secret,
label 0: ready for ``latentcode detect``), ``learning_curve.png`` and ``summary.json``. Every step
draws its episodes and samples from seeds derived from (seed, step), so a resumed run repeats
the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import NamedTuple

import torch

from ..jsonl import atomic_dir, claim_folder, write_json
from ..lm import LM, load_lm
from ..transcripts import Transcript, read_transcripts, write_transcripts
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, overseer_specs
from .distributed import Distributed
from .evaluation import eval_episodes, eval_rollouts, evaluate, matched_clean, reference_answers
from .monitoring import make_overseers
from .receiver import make_receiver
from .regimes import REGIMES, make_regime
from .regimes.base import Context, draw_episodes, judge, receiver_view, sample, step_seed
from .runlog import RunLog
from .sender import Sender
from .tasks import make_task

__all__ = [
    "RunFolderError",
    "build_parts",
    "eval_episodes",
    "eval_rollouts",
    "evaluate",
    "judge",
    "probe_default_signal",
    "receiver_view",
    "step_seed",
    "train",
]


class RunFolderError(ValueError):
    """The output folder holds a run with another config."""


def calibrate(overseers, sender: Sender, task, cfg: TrainConfig) -> None:
    """Fit each overseer on clean responses of the frozen reference (seeded: resumable)."""
    if not any(hasattr(o, "detector") for o in overseers):
        return
    rng = random.Random(step_seed(cfg.seed, 0, "calibrate"))
    clean = reference_answers(sender, task,
                              task.episodes(cfg.reward.calibration_samples, rng, "train"), cfg,
                              step_seed(cfg.seed, 0, "calibrate-sample"))
    transcripts = [Transcript(id=f"clean-{i}", prompt=clean.episodes[i].prompt, text=text)
                   for i, text in enumerate(clean.texts) if text.strip()]
    for overseer in overseers:
        overseer.calibrate(transcripts)


class Parts(NamedTuple):
    sender: Sender
    task: object
    receiver: object
    overseers: list
    paraphraser: LM | None  # the frozen model that rewrites responses for the receiver, if any


def build_parts(cfg: TrainConfig, lm: LM | None, judge_lm: LM | None, device=None) -> Parts:
    """Sender (wrapping ``lm`` in place), task, receiver, overseers and paraphraser for a config."""
    lm = lm or load_lm(cfg.sender.model or None, device=device)
    torch.manual_seed(cfg.seed)  # the LoRA initialisation
    sender = Sender(lm, rank=cfg.sender.lora_rank, alpha=cfg.sender.lora_alpha,
                    targets=cfg.sender.lora_targets)
    task = make_task(cfg.task)
    receiver = make_receiver(cfg.receiver, sender, task, seed=cfg.seed)
    if cfg.receiver.supervised_weight < 0:
        raise ValueError(f"receiver.supervised_weight must be >= 0, got {cfg.receiver.supervised_weight}")
    if cfg.receiver.supervised_weight > 0 and not hasattr(receiver, "log_posteriors_tensor"):
        raise ValueError("receiver.supervised_weight needs receiver.kind = \"likelihood\" (the "
                         "receiver that shares the sender's weights); the bow receiver fits itself")
    from detectors import DETECTORS

    # a frozen copy of the model for every overseer that reads one (a white-box one reads the
    # sender) and for the paraphraser
    needs_frozen = cfg.receiver.paraphrase or any(
        s.name != "string-match" and not s.whitebox and getattr(DETECTORS.get(s.name), "needs_lm", True)
        for s in overseer_specs(cfg.reward.overseers))
    if needs_frozen and judge_lm is None:
        judge_lm = load_lm(cfg.sender.model or None, device=device)  # a frozen copy: judge and paraphraser never train

    def reference(episodes, seed):  # what an adaptive monitor learns as clean
        return reference_answers(sender, task, episodes, cfg, seed)

    overseers = make_overseers(cfg.reward.overseers, judge_lm, sender=sender,
                               reference=reference, seed=cfg.seed)
    return Parts(sender, task, receiver, overseers, judge_lm if cfg.receiver.paraphrase else None)


# sections a resumed run may take from a new config or a new version's defaults: they change
# nothing already trained (measure runs after the last step; checkpoint says only when to save)
RESUMABLE_CHANGES = ("measure", "checkpoint")


def train(cfg: TrainConfig, out: str | Path, *, lm: LM | None = None, judge_lm: LM | None = None,
          progress: bool = True, stop_after: int | None = None, tensorboard: bool = True) -> dict:
    """Train (or resume) the run in ``out``; ``stop_after`` ends early after that many steps
    (an interruption, for tests). Returns the summary.

    Under ``accelerate launch --multi_gpu --num_processes N`` the step's episodes are shared out
    (``distributed.py``); only the main process evaluates and writes the run folder."""
    from tqdm.auto import tqdm

    out = Path(out)
    dist = Distributed()
    claimed = claim_folder(out, cfg.to_dict(), may_change=RESUMABLE_CHANGES) if dist.is_main else True
    if not all(dist.gather([claimed])):
        raise RunFolderError(f"{out} holds a run with another config; choose another --out "
                             "or delete the folder")
    run_name = out.name or "run"

    sender, task, receiver, overseers, paraphraser = build_parts(cfg, lm, judge_lm, dist.device)
    optimizer = torch.optim.AdamW(sender.trainable_parameters(), lr=cfg.rl.lr, weight_decay=0.0)
    ctx = Context(cfg, sender, task, receiver, overseers, paraphraser, optimizer, dist)
    regime = make_regime(cfg.regime, ctx)  # may swap in its own receiver (distill)
    if dist.world > 1 and not regime.multiprocess:
        raise ValueError(f"regime {cfg.regime!r} runs in one process only; launch it without "
                         "accelerate (multi-process training supports: "
                         f"{', '.join(n for n, f in REGIMES.items() if f.multiprocess)})")
    dist.share(cfg.rl.prompts_per_step)  # fails now, not at the first step, if uneven
    if dist.world > 1 and any(hasattr(o, "learn") for o in overseers):
        raise ValueError("adaptive overseers learn in one process only; launch without accelerate")

    start = 0
    if (out / "checkpoint" / "state.json").is_file():
        state = load_checkpoint(out / "checkpoint", sender, optimizer, ctx.receiver, overseers)
        start = state["step"]
        if hasattr(ctx.receiver, "load_state"):
            ctx.receiver.load_state(state["receiver"])
        regime.load_state(state.get("regime", {}))
    log = RunLog(out, start, tensorboard=tensorboard and dist.is_main, write=dist.is_main)
    calibrate(overseers, sender, task, cfg)

    end = cfg.rl.steps if stop_after is None else min(cfg.rl.steps, start + stop_after)
    bar = tqdm(range(start, end), desc=f"training ({cfg.regime})", unit="step",
               disable=not progress or not dist.is_main, initial=start, total=cfg.rl.steps)

    def run_eval(done: int) -> None:
        if not dist.is_main:  # one process evaluates: the weights are the same everywhere
            return
        result = {}
        for suffix, condition in regime.eval_conditions().items():
            one, transcripts = evaluate(done, cfg, sender, ctx.receiver, overseers, task,
                                        run_name, paraphraser, condition)
            name = f"eval-step-{done:04d}{'-' + suffix if suffix else ''}.jsonl"
            write_transcripts(out / "transcripts" / name, transcripts)
            result.update(one if not suffix else
                          {f"{k}/{suffix}": v for k, v in one.items() if k not in ("step", "n")})
        result["train_seconds"] = round(sum(m["seconds"] for m in log.metrics), 1)
        log.eval(result)

    if start == 0 and not log.evals:
        run_eval(0)
        if dist.is_main:
            log.save()
    every, minutes = cfg.checkpoint.every, cfg.checkpoint.minutes
    saved_at = time.monotonic()
    for step in bar:
        row = regime.step(step)
        log.step(row)
        bar.set_postfix(acc=f"{row['accuracy']:.2f}", kl=f"{row.get('kl', 0):.3f}",
                        reward=f"{row['reward']:.3f}")
        done = step + 1
        evaluated = done % cfg.eval.every == 0 or done == cfg.rl.steps
        if evaluated:
            run_eval(done)
        due = (evaluated or done == end or (every > 0 and done % every == 0)
               or (minutes > 0 and time.monotonic() - saved_at >= 60 * minutes))
        if due and dist.is_main:
            saved_at = time.monotonic()
            log.save()
            extra = {"receiver": ctx.receiver.state() if hasattr(ctx.receiver, "state") else {},
                     "regime": regime.state()}
            save_checkpoint(out / "checkpoint", done, sender, optimizer, extra, ctx.receiver,
                            overseers)
        dist.barrier()  # the others wait while the main process evaluates and saves
    bar.close()
    log.close()

    metrics, evals = log.metrics, log.evals
    summary = {"steps_done": end, "steps": cfg.rl.steps, "final_eval": evals[-1] if evals else None,
               "default_signal": evals[0] if evals else None,
               "seconds": round(sum(m["seconds"] for m in metrics), 1), "processes": dist.world}
    if end == cfg.rl.steps and dist.is_main:
        sender.model.save_pretrained(str(out / "adapter"), safe_serialization=True,
                                     selected_adapters=[sender.model.active_adapter])
        if hasattr(ctx.receiver, "save"):  # the LM receiver's weights, for `latentcode measure`
            with atomic_dir(out / "receiver") as tmp:
                ctx.receiver.save(tmp, optimizer=False)
        last = read_transcripts(out / "transcripts" / f"eval-step-{cfg.rl.steps:04d}.jsonl")
        write_transcripts(out / "samples.jsonl",
                          last + matched_clean(cfg, sender, task, run_name))
        from .curves import plot_learning_curve

        plot_learning_curve(metrics, evals, out / "learning_curve.png")
        if cfg.measure.enabled:
            from .measure import measure_run

            summary["instrumentality"] = measure_run(
                out, detectors=cfg.measure.detectors, n_boot=cfg.measure.bootstrap,
                sender=sender, receiver=ctx.receiver, detector_lm=judge_lm)
        if hasattr(task, "honest_baseline"):  # the accuracy to beat without a covert channel
            summary["honest_baseline"] = task.honest_baseline()
        write_json(out / "summary.json", summary)
    dist.barrier()
    return summary


def probe_default_signal(cfg: TrainConfig, out: str | Path, *, lm: LM | None = None,
                         judge_lm: LM | None = None, batches: int = 4) -> dict:
    """RL-NOTES.md item 1: with the sender frozen, can the receiver read anything at all?

    The receiver watches ``batches`` training steps' worth of responses (the bag-of-words one
    fits on them), then names the secrets of held-out prompts. Accuracy at chance means RL has
    no signal to amplify: change the task framing or the receiver before tuning anything.
    Writes ``probe.json`` into ``out``.
    """
    out = Path(out)
    ctx = Context(cfg, *build_parts(cfg, lm, judge_lm))
    sender, task, receiver, overseers, paraphraser = (ctx.sender, ctx.task, ctx.receiver,
                                                      ctx.overseers, ctx.paraphraser)
    calibrate(overseers, sender, task, cfg)
    train_acc = []
    for step in range(batches):  # the first training steps' episodes and samples, untrained
        rollouts = sample(ctx, step, draw_episodes(ctx, step))
        seen = receiver_view(rollouts, paraphraser, sender, step_seed(cfg.seed, step, "paraphrase"))
        decoder = getattr(receiver, "decoder", receiver)  # never a privileged teacher
        train_acc.append(float((decoder.log_posteriors(seen).argmax(1)
                                == rollouts.truth()).mean()))
        receiver.observe(seen)
    result, transcripts = evaluate(0, cfg, sender, receiver, overseers, task, out.name or "probe",
                                   paraphraser)
    chance = 1 / len(task.episodes(1, random.Random(0), "eval")[0].candidates)
    from scipy.stats import binomtest

    def p_value(accuracy: float) -> float:
        return float(binomtest(round(accuracy * result["n"]), result["n"], chance,
                               alternative="greater").pvalue)

    summary = {**result, "chance": chance, "receiver": cfg.receiver.kind,
               "train_batch_accuracy": train_acc, "p_value_above_chance": p_value(result["accuracy"])}
    for key in [k for k in result if k.startswith("accuracy/")]:  # each receiver of a hand-over
        summary[f"p_value_above_chance/{key.split('/', 1)[1]}"] = p_value(result[key])
    write_json(out / "probe.json", summary)
    write_transcripts(out / "transcripts" / "probe.jsonl", transcripts)
    return summary
