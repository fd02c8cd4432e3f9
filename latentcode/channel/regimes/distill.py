"""``distill``: a student learns a trained sender's outputs by supervised learning alone.

The teacher is a finished run (``distill.teacher``: its ``adapter/``, on the base model its
``config.json`` names). Each step the teacher answers the step's episodes (the same budget of
samples), and the student (``sender.model`` with a fresh LoRA adapter: the reference model by
default, or any other model) is fine-tuned with the language-model loss on ``instructions +
prompt -> teacher's response``. No reward reaches the student. The receiver is the teacher's
own (its likelihood reader), fixed: the evaluation asks whether the code survives distillation,
that is whether the original receiver still decodes the student's text, and the run's
``samples.jsonl`` lets the detectors say whether it got easier or harder to see.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ...lm import load_lm
from ..receiver import LikelihoodReceiver
from ..runlog import finished_run_config
from ..sender import Rollouts, Sender, episode_prompt_ids
from . import register_regime
from .base import Regime, draw_episodes, lm_loss, optimizer_step, sample, score, step_metrics


class RetokenizingReceiver:
    """The teacher's receiver reading a student whose tokenizer differs: it re-reads the text."""

    name = "likelihood"

    def __init__(self, inner: LikelihoodReceiver):
        self.inner = inner

    def observe(self, rollouts: Rollouts) -> None:
        pass

    def log_posteriors(self, rollouts: Rollouts):
        tok = self.inner.sender.lm.tokenizer
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in rollouts.texts]
        return self.inner.log_posteriors(dataclasses.replace(rollouts, response_ids=ids))


def load_teacher(run: str | Path, task_cfg) -> Sender:
    run = Path(run)
    teacher_cfg = finished_run_config(run, "distill.teacher ")
    if teacher_cfg["task"] != dataclasses.asdict(task_cfg):
        raise ValueError(f"distill.teacher {str(run)!r} was trained on task {teacher_cfg['task']}; "
                         f"this run's task is {dataclasses.asdict(task_cfg)}: set the same [task]")
    return Sender.load(load_lm(teacher_cfg["sender"]["model"] or None), run / "adapter")


def teacher_receiver(teacher: Sender, task, student: Sender):
    """The teacher's own likelihood receiver, reading the student's text (re-tokenized when the
    two vocabularies differ)."""
    reader = LikelihoodReceiver(teacher, task.system_for)
    same_vocab = teacher.lm.tokenizer.get_vocab() == student.lm.tokenizer.get_vocab()
    return reader if same_vocab else RetokenizingReceiver(reader)


@register_regime("distill")
class DistillRegime(Regime):
    name = "distill"

    def __init__(self, ctx, teacher: Sender | None = None):
        super().__init__(ctx)
        if ctx.cfg.receiver.kind != "likelihood":
            raise ValueError("distill decodes with the teacher's own likelihood receiver: "
                             "set receiver.kind = \"likelihood\"")
        if teacher is None:
            if not ctx.cfg.distill.teacher:
                raise ValueError("distill needs distill.teacher = a finished run folder")
            teacher = load_teacher(ctx.cfg.distill.teacher, ctx.cfg.task)
        self.teacher = teacher
        ctx.receiver = teacher_receiver(teacher, ctx.task, ctx.sender)
        self.same_vocab = not isinstance(ctx.receiver, RetokenizingReceiver)

    def step(self, step: int) -> dict:
        ctx, started = self.ctx, time.perf_counter()
        rollouts = sample(ctx, step, draw_episodes(ctx, step), sender=self.teacher)
        scored = score(ctx, step, rollouts)  # the teacher's code, read by its own receiver
        student = ctx.sender.lm
        prompts = episode_prompt_ids(student, [rollouts.episode_of(r) for r in range(len(rollouts))])
        responses = (rollouts.response_ids if self.same_vocab else
                     [student.tokenizer(t, add_special_tokens=False)["input_ids"]
                      for t in rollouts.texts])
        keep = [r for r, ids in enumerate(responses) if ids]
        loss = lm_loss(student, [prompts[r] for r in keep], [responses[r] for r in keep])
        grad_norm = optimizer_step(ctx, loss)
        return step_metrics(step, scored, started, loss=float(loss.detach()), grad_norm=grad_norm)
