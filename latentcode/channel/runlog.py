"""What a training run records as it goes: one row per step and one per evaluation, kept as
JSONL (the machine-readable truth a resume reads back), ``metrics.csv`` (for a spreadsheet or
pandas) and TensorBoard event files (to watch a run live: ``tensorboard --logdir runs/``).

Each row is appended as it is made, so a user watching the CSV sees every step, and a kill
loses nothing that was logged. A resume keeps the rows up to its checkpoint's step and rewrites
the files atomically without the rest (a kill may also leave half a last line, which is
dropped). TensorBoard's writer is opened with ``purge_step`` on a resume, so the steps an
interrupted run logged after its last checkpoint are dropped, not drawn twice.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..jsonl import atomic_open, dumps, write_jsonl


def _read_rows(path: Path, up_to_step: int) -> list[dict]:
    """Rows up to ``up_to_step``; half a last line (a kill during an append) is dropped, a
    broken line anywhere else is an error."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                break
            raise ValueError(f"{path}, line {number}: not a JSON row ({e.msg}); the run log is "
                             "damaged: restore it or start the run in a new folder") from e
    return [r for r in rows if r["step"] <= up_to_step]


def write_csv(path: Path, rows: list[dict]) -> list[str]:
    """Rows as CSV, columns in order of first appearance (a column missing from a row is
    blank); returns the columns."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as f:
        f.write(buffer.getvalue())
    return list(columns)


class RunLog:
    """Step and eval rows of one run folder; ``start`` is the step the run resumes from.
    Only a process with ``write`` (the main one) touches the files."""

    def __init__(self, out: Path, start: int, tensorboard: bool = True, write: bool = True):
        self.out, self.write = Path(out), write
        self.metrics = _read_rows(self.out / "metrics.jsonl", start)
        self.evals = _read_rows(self.out / "eval.jsonl", start)
        self._csv_columns: list[str] = []
        if write:
            self._rewrite()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # rows up to the checkpoint's step are kept; anything later was logged after it
            self.writer = SummaryWriter(str(self.out / "tensorboard"),
                                        purge_step=start + 1 if start else None)

    def step(self, row: dict) -> None:
        self.metrics.append(row)
        self._append("metrics.jsonl", row)
        if self.write:
            if set(row) <= set(self._csv_columns):
                with open(self.out / "metrics.csv", "a", newline="") as f:
                    csv.DictWriter(f, fieldnames=self._csv_columns, restval="",
                                   lineterminator="\n").writerow(row)
            else:  # a new column: the header changes, so the file is written anew
                self._csv_columns = write_csv(self.out / "metrics.csv", self.metrics)
        self._scalars("train", row)

    def eval(self, row: dict) -> None:
        self.evals.append(row)
        self._append("eval.jsonl", row)
        self._scalars("eval", row)

    def _append(self, name: str, row: dict) -> None:
        if self.write:
            with open(self.out / name, "a") as f:
                f.write(dumps(row) + "\n")

    def _rewrite(self) -> None:
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        write_jsonl(self.out / "eval.jsonl", self.evals)
        self._csv_columns = write_csv(self.out / "metrics.csv", self.metrics)

    def _scalars(self, group: str, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, row["step"])

    def save(self) -> None:
        """Flush TensorBoard (the JSONL and CSV rows are already on disk)."""
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


def flag_rates(row: dict) -> dict[str, float]:
    """A metrics or evaluation row's flag rate per overseer, by name: the ``flagged/{name}``
    keys the trainer writes, read back in one place."""
    return {k.split("/", 1)[1]: v for k, v in row.items()
            if k.startswith("flagged/") and k.count("/") == 1}
