"""The overseers a config lists, built, and the adaptive ones taught: the one place the
trainer and the regimes ask (``overseers.py`` holds the fixed ones, ``adaptive.py`` the ones
that learn)."""

from __future__ import annotations

from collections.abc import Sequence

from .adaptive import AdaptiveOverseer
from .config import overseer_specs
from .overseers import DetectorOverseer, StringMatchOverseer
from .sender import Rollouts


def make_overseers(entries: Sequence, judge_lm, *, sender=None, reference=None, seed: int = 0) -> list:
    """The overseers of ``reward.overseers`` (names, or tables: :class:`OverseerSpec`).
    Adaptive ones need the ``sender`` (a white-box one reads it) and ``reference``, a function
    of (episodes, seed) giving the frozen reference's answers."""
    out = []
    for spec in overseer_specs(list(entries)):
        if spec.adaptive:
            if sender is None or reference is None:
                raise ValueError(f"adaptive overseer {spec.name!r} needs the sender and its reference")
            out.append(AdaptiveOverseer(spec, judge_lm, sender, reference, seed))
        elif spec.name == "string-match":
            out.append(StringMatchOverseer())
        else:
            out.append(DetectorOverseer(spec.name, judge_lm, spec.params))
        out[-1].spec = spec  # its curriculum in the reward (rewards.overseer_lambda)
    return out


def learn_overseers(overseers: Sequence, step: int, rollouts: Rollouts) -> dict:
    """Let every adaptive overseer learn from a training step (never from an evaluation);
    returns their metrics (each one's AUROC on the step, before it learned from it)."""
    out = {}
    for overseer in overseers:
        if hasattr(overseer, "learn"):
            out.update(overseer.learn(step, rollouts))
    return out
