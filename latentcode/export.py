"""Scored transcripts as Parquet, for pandas and polars users (``latentcode export``).

One row per transcript; each detector's score is a float column ``scores.<detector>`` (null
where a transcript was not scored by it), so ``df.groupby("source")["scores.tail"].mean()`` works
at once. ``meta`` (and any unknown top-level fields, as ``extra``) are JSON text: free-form
dicts have no fixed Parquet schema. The file reads back into the same transcripts
(``read_transcripts`` takes Parquet), and is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from .formats import SCORE_PREFIX
from .jsonl import atomic_open
from .transcripts import Transcript


def transcripts_table(transcripts: Sequence[Transcript]):
    """A pyarrow table of the transcripts, columns in a fixed order."""
    import pyarrow as pa

    detectors = sorted({name for t in transcripts for name in t.scores})
    columns = {
        "id": pa.array([t.id for t in transcripts], pa.string()),
        "prompt": pa.array([t.prompt for t in transcripts], pa.string()),
        "text": pa.array([t.text for t in transcripts], pa.string()),
        "label": pa.array([t.label for t in transcripts], pa.int8()),
        "payload": pa.array([t.payload for t in transcripts], pa.string()),
        "source": pa.array([t.source for t in transcripts], pa.string()),
        "meta": pa.array([json.dumps(t.meta, ensure_ascii=False) for t in transcripts],
                         pa.string()),
    }
    if any(t.extra for t in transcripts):
        columns["extra"] = pa.array([json.dumps(t.extra, ensure_ascii=False) if t.extra else None
                                     for t in transcripts], pa.string())
    for name in detectors:
        columns[SCORE_PREFIX + name] = pa.array([t.scores.get(name) for t in transcripts],
                                                pa.float64())
    return pa.table(columns)


def write_parquet(path: str | os.PathLike, transcripts: Sequence[Transcript]) -> None:
    """Write the transcripts to one Parquet file, atomically (the file appears whole or not)."""
    import pyarrow.parquet as pq

    ids = [t.id for t in transcripts]
    if len(set(ids)) != len(ids):
        raise ValueError("refusing to export duplicate transcript ids")
    table = transcripts_table(transcripts)
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
