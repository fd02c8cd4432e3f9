"""The processes of one training run: ``accelerate launch --multi_gpu --num_processes N -m latentcode train``.

Every process draws the same episodes (they are seeded by step), takes its contiguous share of
them and samples, scores and back-propagates only its own rows, each row keeping its global
index (so its random stream is the one a single process would use). Whole groups stay on one
process, so group-relative advantages need nothing from the others. Gradients are then
averaged across processes (gloo on CPU, NCCL on GPU, through accelerate): with equal shares the
average of the per-process mean losses is the single-process mean loss, so every process takes
the same optimizer step as one process would, and the weights stay identical everywhere.
Metrics and what the receiver learns from are gathered, so they are computed on all rows.
Only the main process writes the run folder.

A single process is ``Distributed()`` with ``world == 1``: every method is then a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

import torch

WAIT_HOURS = 6  # how long a process waits for the others at a collective (evaluation included)


class Distributed:
    def __init__(self, from_launcher: bool = True):
        """The processes ``accelerate launch`` (or torchrun) started, read from the environment;
        with ``from_launcher=False``, this process alone."""
        self.world = int(os.environ.get("WORLD_SIZE", "1")) if from_launcher else 1
        self.rank = 0
        self.device = None  # None: load_lm picks (CUDA when present)
        self._state = None
        if self.world > 1:
            from accelerate import PartialState

            # without CUDA, accelerate must be told it is a CPU job to join the gloo group; the
            # other processes wait while the main one evaluates and measures, which on a big
            # model can outlast the default 30-minute collective timeout
            self._state = PartialState(cpu=not torch.cuda.is_available(),
                                       timeout=timedelta(hours=WAIT_HOURS))
            self.rank, self.world = self._state.process_index, self._state.num_processes
            self.device = self._state.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> range:
        """This process's contiguous share of ``n`` items (``n`` must divide evenly)."""
        if n % self.world:
            raise ValueError(f"{n} episodes per step cannot be shared evenly by {self.world} "
                             "processes; make rl.prompts_per_step a multiple of --num_processes")
        size = n // self.world
        return range(self.rank * size, (self.rank + 1) * size)

    def gather(self, items: Sequence) -> list:
        """Every process's ``items``, concatenated in rank order (the global row order)."""
        if self.world == 1:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def mean(self, value: float, weight: float = 1.0) -> float:
        """The ``weight``-weighted mean of a per-process value over all processes."""
        if self.world == 1:
            return float(value)
        pairs = self.gather([(float(value), float(weight))])
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else 0.0

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes."""
        if self.world == 1:
            return
        from accelerate.utils import reduce

        for p in parameters:  # every process reduces every tensor, in the same order
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(reduce(p.grad, reduction="mean"))

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()


SINGLE = Distributed(from_launcher=False)
