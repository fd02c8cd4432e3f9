"""What a training run records as it goes: one row per step and one per evaluation, kept as
JSONL (the machine-readable truth a resume reads back), ``metrics.csv`` (for a spreadsheet or
pandas) and TensorBoard event files (to watch a run live: ``tensorboard --logdir runs/``).

The JSONL and CSV files are rewritten atomically at every checkpoint, so they never hold a step
the checkpoint does not. TensorBoard's writer is opened with ``purge_step`` on a resume, so the
steps an interrupted run logged after its last checkpoint are dropped, not drawn twice.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..jsonl import atomic_open, write_jsonl


def _read_rows(path: Path, up_to_step: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= up_to_step]


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV, columns in order of first appearance (a column missing from a row is blank)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as f:
        f.write(buffer.getvalue())


class RunLog:
    """Step and eval rows of one run folder; ``start`` is the step the run resumes from."""

    def __init__(self, out: Path, start: int, tensorboard: bool = True):
        self.out = Path(out)
        self.metrics = _read_rows(self.out / "metrics.jsonl", start)
        self.evals = _read_rows(self.out / "eval.jsonl", start)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # rows up to the checkpoint's step are kept; anything later was logged after it
            self.writer = SummaryWriter(str(self.out / "tensorboard"),
                                        purge_step=start + 1 if start else None)

    def step(self, row: dict) -> None:
        self.metrics.append(row)
        self._scalars("train", row)

    def eval(self, row: dict) -> None:
        self.evals.append(row)
        self._scalars("eval", row)

    def _scalars(self, group: str, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, row["step"])

    def save(self) -> None:
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        write_jsonl(self.out / "eval.jsonl", self.evals)
        write_csv(self.out / "metrics.csv", self.metrics)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def finished_run_config(run: str | Path, what: str = "") -> dict:
    """The ``config.json`` of a finished ``latentcode train`` run folder (one that holds its
    final ``adapter/``); ``what`` names where the path came from, for the error."""
    run = Path(run)
    if not (run / "config.json").is_file() or not (run / "adapter").is_dir():
        raise FileNotFoundError(f"{what}{str(run)!r}: not a finished run folder (needs "
                                "config.json and adapter/ from `latentcode train`)")
    return json.loads((run / "config.json").read_text())
