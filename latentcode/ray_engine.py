"""The ``--engine ray`` path: detection and generation as Ray Data jobs on a pool of actors.

Each actor loads the language model (and the fitted detectors) once, in its constructor, and
then scores or generates batch after batch (``Dataset.map_batches`` with a callable class). The
driver keeps what only it can do: reading and checking the input (errors name file and line as
always), fitting detectors, and writing the output, in input order, atomically.

- **Cluster**: ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` when it is set and
  starts a local one otherwise. Workers must be able to import latentcode and load the model
  by the name given (``--model``; the embedded model ships inside the package on every node).
- **Fitted detectors travel as files**: each is saved (``detector.json`` + ``state.safetensors``)
  and its bytes go to the actors, which write them to a folder of their own and load them with
  the same safe loader as ``--load``. No detector state is ever pickled.
- **Order and exactness**: every row carries its input position and the results are put back
  in that order. A score is the same function of the same text on any actor; only float
  rounding that depends on how rows are batched can differ (the tests hold it within 1e-6).
  Generation keeps each row's global index, so its seeded stream and its id are those of the
  local engine.
- **GPUs**: when the cluster has GPUs, each actor asks for ``GPUs / actors`` of one, so a single
  GPU is shared by all the actors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .formats import MissingExtraError
from .jsonl import dumps
from .transcripts import Transcript, parse_transcript


def require_ray():
    """Import ray (with Ray Data), or say which extra provides it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError("--engine ray", "scale", "ray[data]") from None
    return ray


def init_ray():
    """Join ``RAY_ADDRESS``'s cluster, or start a local one (once per process)."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True
    return ray


def gpu_share(actors: int) -> float:
    """The fraction of a GPU each actor asks for: all the cluster's GPUs shared out, at most
    one each; 0 on a cluster without GPUs."""
    ray = init_ray()
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    return min(1.0, gpus / actors) if gpus else 0.0


def cluster_summary() -> str:
    ray = init_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    return (f"ray cluster: {len(nodes)} node(s), {res.get('CPU', 0):g} CPUs, "
            f"{res.get('GPU', 0):g} GPUs")


# ---------------------------------------------------------------------------- detection


def pack_detector(detector) -> dict[str, bytes]:
    """A fitted detector as the bytes of its saved files (JSON and safetensors only)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = detector.save(Path(tmp) / detector.name)
        return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


class ScoringActor:
    """One Ray actor: loads the model and the fitted detectors once, then scores batches."""

    def __init__(self, packed: dict[str, dict[str, bytes]], model: str | None,
                 device: str | None, needs_lm: bool):
        from detectors import load_detector

        from .lm import load_lm

        self.lm = load_lm(model, device=device) if needs_lm else None  # its device rule
        self._tmp = tempfile.TemporaryDirectory(prefix="latentcode-detectors-")
        self.detectors = {}
        for name, files in packed.items():
            folder = Path(self._tmp.name) / name
            folder.mkdir()
            for filename, data in files.items():
                (folder / Path(filename).name).write_bytes(data)
            self.detectors[name] = load_detector(folder, lm=self.lm)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        transcripts = [_transcript(record, int(row))
                       for row, record in zip(batch["row"], batch["record"])]
        out = {"row": np.asarray(batch["row"], dtype=np.int64),
               "node": np.asarray([_node_id()] * len(transcripts), dtype=str)}
        for name, detector in self.detectors.items():
            out[f"score/{name}"] = np.asarray(detector.score(transcripts), dtype=np.float64)
        return out


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _transcript(record: str, row: int) -> Transcript:
    import json

    transcript, problems = parse_transcript(json.loads(record), "(ray batch)", row)
    if transcript is None:  # the driver checked every record; this would be a bug
        raise ValueError("; ".join(str(p) for p in problems))
    return transcript


def score_on_ray(transcripts: Sequence[Transcript], fitted: Sequence, *, model: str | None,
                 device: str | None = None, actors: int = 2,
                 batch_size: int = 64) -> tuple[dict[str, np.ndarray], int]:
    """Each fitted detector's scores for ``transcripts``, in input order, from a Ray actor pool,
    and the number of cluster nodes whose actors did the scoring."""
    if actors < 1:
        raise ValueError(f"actors must be at least 1, got {actors}")
    packed = {d.name: pack_detector(d) for d in fitted}
    needs_lm = any(getattr(d, "needs_lm", False) for d in fitted)
    rows = [{"row": i, "record": dumps(t.to_dict())} for i, t in enumerate(transcripts)]
    batches = _map_on_actors(rows, ScoringActor, {"packed": packed, "model": model,
                                                  "device": device, "needs_lm": needs_lm},
                             actors, batch_size)
    return _in_order(batches, len(rows), [d.name for d in fitted])


def _map_on_actors(rows: list[dict], actor: type, kwargs: dict, actors: int, batch_size: int):
    """``rows`` as a Ray dataset mapped by a pool of ``actors`` instances of ``actor`` (one CPU,
    and a share of the GPUs, each): the output batches, as numpy columns."""
    ray = init_ray()
    dataset = ray.data.from_items(rows,
                                  override_num_blocks=max(actors, -(-len(rows) // batch_size)))
    mapped = dataset.map_batches(
        actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, num_gpus=gpu_share(actors))
    return mapped.iter_batches(batch_size=None, batch_format="numpy")


def _in_order(batches, n: int, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    out = {name: np.full(n, np.nan) for name in names}
    seen = np.zeros(n, dtype=bool)
    nodes: set[str] = set()
    for batch in batches:
        rows = batch["row"]
        seen[rows] = True
        nodes.update(batch["node"].tolist())
        for name in names:
            out[name][rows] = batch[f"score/{name}"]
    if not seen.all():
        raise RuntimeError(f"ray returned {int(seen.sum())} of {n} rows")
    return out, len(nodes)


# --------------------------------------------------------------------------- generation


class GeneratingActor:
    """One Ray actor: loads the model once, then makes the transcripts of the rows it is given
    (``make(lm, rows)`` returns them in row order)."""

    def __init__(self, make: Callable, model: str | None, device: str | None, dtype: str):
        import torch

        from .lm import load_lm

        self.lm = load_lm(model, device=device, dtype=getattr(torch, dtype))
        self.make = make

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [int(r) for r in batch["row"]]
        made = self.make(self.lm, rows)
        return {"row": np.asarray(rows, dtype=np.int64),
                "record": np.asarray([dumps(t.to_dict()) for t in made], dtype=str)}


def generate_on_ray(make: Callable, n: int, *, model: str | None, device: str | None = None,
                    dtype: str = "float32", actors: int = 2,
                    batch_size: int = 16) -> list[Transcript]:
    """``make(lm, rows)`` run over ``range(n)`` in shards on a Ray actor pool; the transcripts
    come back in row order. ``make`` must give row ``i`` the same text wherever it runs
    (seeded per row, as ``sample_clean`` and the codecs are)."""
    batches = _map_on_actors([{"row": i} for i in range(n)], GeneratingActor,
                             {"make": make, "model": model, "device": device, "dtype": dtype},
                             actors, batch_size)
    records: list[str | None] = [None] * n
    for batch in batches:
        for row, record in zip(batch["row"], batch["record"]):
            records[int(row)] = record
    missing = [i for i, r in enumerate(records) if r is None]
    if missing:
        raise RuntimeError(f"ray returned {n - len(missing)} of {n} rows")
    return [_transcript(r, i + 1) for i, r in enumerate(records)]
