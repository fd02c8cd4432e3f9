"""Seeds derived from (run seed, step, purpose): what makes every step of a run repeatable, so
that a resumed run draws what an uninterrupted one would have drawn."""

from __future__ import annotations

import random


def step_seed(seed: int, step: int, what: str) -> int:
    return int.from_bytes(random.Random(f"{seed}/{what}/{step}").randbytes(4), "little")
