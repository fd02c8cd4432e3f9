"""Read scored transcripts for a report, merging files and refusing anything a ROC cannot use.

Files either hold different transcripts (clean in one, stego in another: concatenated) or the
same transcripts scored by different detectors (merged by id). Files that share only some ids
are refused: that is almost always a scoring run that stopped half-way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..transcripts import Transcript, read_transcripts

MAX_IDS_SHOWN = 3


class ReportInputError(ValueError):
    """Input a report cannot be made from; the message says where and what to do."""


@dataclass
class ScoredSet:
    transcripts: list[Transcript]
    detectors: list[str]
    files: list[str]
    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> first (file, line)

    def labels(self) -> list[int]:
        return [t.label for t in self.transcripts]

    def scores(self, detector: str) -> list[float]:
        return [t.scores[detector] for t in self.transcripts]


def _read_file(path: str) -> tuple[list[Transcript], dict[str, int]]:
    where: dict[str, tuple[str, int]] = {}
    transcripts = read_transcripts(path, locations=where)
    return transcripts, {i: line for i, (_, line) in where.items()}


def _shown(ids) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    return ", ".join(repr(i) for i in ids[:MAX_IDS_SHOWN]) + more


def load_scored(paths: Sequence[str | os.PathLike]) -> ScoredSet:
    """Read, merge and check scored transcript files; raise ReportInputError on bad input."""
    files = [str(p) for p in paths]
    if not files:
        raise ReportInputError("no input files; pass one or more scored JSONL files")
    merged: dict[str, Transcript] = {}
    where: dict[str, tuple[str, int]] = {}
    id_sets: list[tuple[str, set[str]]] = []
    for path in files:
        transcripts, lines = _read_file(path)
        ids = set(lines)
        for other, other_ids in id_sets:
            shared = ids & other_ids
            if shared and (shared != ids or shared != other_ids):
                raise ReportInputError(
                    f"{path} and {other} share {len(shared)} transcript ids but not all: "
                    f"{len(ids - other_ids)} only in {path} ({_shown(ids - other_ids)}), "
                    f"{len(other_ids - ids)} only in {other} ({_shown(other_ids - ids)}). "
                    "Pass files that hold either the same transcripts (scored by different "
                    "detectors) or different transcripts")
        id_sets.append((path, ids))
        for t in transcripts:
            if t.id not in merged:
                merged[t.id] = t
                where[t.id] = (path, lines[t.id])
                continue
            first, (first_file, first_line) = merged[t.id], where[t.id]
            for name in ("text", "label", "source"):
                if getattr(t, name) != getattr(first, name):
                    raise ReportInputError(
                        f"{path}:{lines[t.id]}: {name}: differs from {first_file}:{first_line} "
                        f"for id {t.id!r}; the same id must mean the same transcript")
            for det, value in t.scores.items():
                if det in first.scores and first.scores[det] != value:
                    raise ReportInputError(
                        f"{path}:{lines[t.id]}: scores.{det}: {value!r} differs from "
                        f"{first.scores[det]!r} at {first_file}:{first_line} for id {t.id!r}")
                first.scores[det] = value
    transcripts = list(merged.values())

    unlabelled = [t.id for t in transcripts if t.label is None]
    if unlabelled:
        file, line = where[unlabelled[0]]
        raise ReportInputError(
            f"{file}:{line}: label: missing on {len(unlabelled)} transcript(s) "
            f"({_shown(unlabelled)}); a report needs label 0 (clean) or 1 (carries a payload)")
    classes = {t.label for t in transcripts}
    if classes != {0, 1}:
        only = "clean (label 0)" if classes == {0} else "payload (label 1)"
        raise ReportInputError(f"all {len(transcripts)} transcripts are {only}; a ROC needs both "
                               "classes: add the other class's scored transcripts")

    detectors = sorted({d for t in transcripts for d in t.scores})
    if not detectors:
        raise ReportInputError("no transcript has scores; run `latentcode detect` first")
    for det in detectors:
        missing = [t.id for t in transcripts if det not in t.scores]
        if missing:
            file, line = where[missing[0]]
            raise ReportInputError(
                f"{file}:{line}: scores.{det}: missing on {len(missing)} of {len(transcripts)} "
                f"transcripts ({_shown(missing)}); score every file with the same detectors")
    return ScoredSet(transcripts, detectors, files, where)
