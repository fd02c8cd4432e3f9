"""A cold start for a receiver that does not share the sender's weights: distil, then hand over.

An LM receiver that starts blind gives the sender a flat reward, and a sender that carries no
code gives the receiver nothing to learn (RL-NOTES.md: the bag-of-words receiver never left
chance here). The likelihood receiver has no cold start: it reads the sender's own
likelihoods, so a weak code is visible from step 0. So the likelihood receiver (the
*teacher*) gives the sender's reward first, while the LM receiver (the *student*) is trained
on the teacher's posteriors as soft labels (knowledge distillation, Hinton et al. 2015): it
learns to read whatever code the teacher rewards, as that code forms. Then the reward is handed
to the student, which goes on learning from the true secrets, and the teacher drops out.

The hand-over happens after ``receiver.handover`` sender steps (0: no fixed step), or earlier
once the student's accuracy on each new batch (read before it trains on it) has averaged at
least ``receiver.handover_accuracy`` over the last ``WINDOW`` steps. The metrics row of every step
says which receiver gave that step's reward (``handed_over``: 1 for the student) and how the
student read that batch before learning from it (``accuracy/lm``).
"""

from __future__ import annotations

import numpy as np

from .lm_receiver import LMReceiver
from .sender import Rollouts

WINDOW = 3  # steps of student accuracy averaged for an early hand-over


def check_handover(handover: int, handover_accuracy: float) -> None:
    """Refuse a hand-over that can never happen (before any model is built for it)."""
    if handover < 0 or not 0.0 <= handover_accuracy <= 1.0 or (handover, handover_accuracy) == (0, 0):
        raise ValueError(f"receiver.teacher needs a hand-over: receiver.handover > 0 (steps) "
                         f"and/or receiver.handover_accuracy in (0, 1]; got {handover}, "
                         f"{handover_accuracy}")


class HandOver:
    """Teacher's posterior as the reward until the hand-over, the student's after."""

    def __init__(self, teacher, student: LMReceiver, *, handover: int, handover_accuracy: float = 0.0):
        check_handover(handover, handover_accuracy)
        self.teacher, self.student = teacher, student
        self.handover, self.handover_accuracy = handover, handover_accuracy
        self.handed_over_at: int | None = None
        self.recent: list[float] = []

    @property
    def name(self) -> str:
        return self.student.name if self.handed_over else self.teacher.name

    @property
    def handed_over(self) -> bool:
        return self.handed_over_at is not None

    def components(self) -> dict:
        """The receivers an evaluation reports one by one (``accuracy/<name>``)."""
        return {self.teacher.name: self.teacher, self.student.name: self.student}

    @property
    def active(self):
        """The receiver whose posterior is the reward now."""
        return self.student if self.handed_over else self.teacher

    @property
    def decoder(self):
        """The receiver whose reading an evaluation reports as the decoding: the active one,
        unless it is ``privileged`` (the pseudo-likelihood teacher knows the other bits), then
        the student."""
        return self.student if getattr(self.active, "privileged", False) else self.active

    def log_posteriors(self, rollouts: Rollouts) -> np.ndarray:
        """The reward's posterior (the active receiver's)."""
        return self.active.log_posteriors(rollouts)

    def observe(self, rollouts: Rollouts, log_posteriors: np.ndarray | None = None) -> dict:
        """``log_posteriors``: what the reward was computed from this step (the teacher's
        before the hand-over, the student's after)."""
        truth, rewarded_by_student = rollouts.truth(), self.handed_over
        if self.handed_over:
            row = self.student.learn(rollouts)
        else:
            if log_posteriors is None:
                log_posteriors = self.teacher.log_posteriors(rollouts)
            row = self.student.learn(rollouts, np.exp(log_posteriors))
        accuracy = row.pop("fresh_accuracy", None)
        if accuracy is None:  # no update this step: read the batch separately
            fresh = self.student.log_posteriors(rollouts)
            accuracy = float((fresh.argmax(1) == truth).mean())
        self.recent = (self.recent + [accuracy])[-WINDOW:]
        steps = self.student.steps_seen
        if not self.handed_over and (
                (self.handover > 0 and steps >= self.handover)
                or (self.handover_accuracy > 0 and len(self.recent) == WINDOW
                    and np.mean(self.recent) >= self.handover_accuracy)):
            self.handed_over_at = steps
        return {**row, "accuracy/lm": accuracy, "handed_over": float(rewarded_by_student)}

    # the student's weights are the only ones of its own to save
    def save(self, folder, **kwargs) -> None:
        self.student.save(folder, **kwargs)

    def load(self, folder) -> None:
        self.student.load(folder)

    def state(self) -> dict:
        return {**self.student.state(), "handed_over_at": self.handed_over_at,
                "recent": self.recent}

    def load_state(self, state: dict) -> None:
        self.student.load_state(state)
        self.handed_over_at, self.recent = state["handed_over_at"], list(state["recent"])
