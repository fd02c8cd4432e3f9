"""A fitted detector ready to watch text from outside latentcode: what every integration shares.

A *monitor* is a saved detector folder (``latentcode detect --save``, or a builtin one made
once on this machine by ``make monitors``, ``builtin:tail``) plus what a host tool needs beside the scores: the model the
detector reads text under, a threshold, and where that threshold came from. inspect_ai scorers,
the Inspect Scout scanner and the ControlArena monitor all load one through :func:`load_monitor`
and score plain ``(prompt, text)`` pairs, so each integration is only the glue its host asks for.

``monitor.json`` beside ``detector.json`` (written by :func:`save_monitor`) records the model
name and, when the detector was calibrated on clean text, the threshold that flags a chosen
share of it. A folder without it still loads: the caller names the model and the threshold.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..jsonl import write_json
from ..transcripts import Transcript

BUILTIN_PREFIX = "builtin:"
MONITOR_FILE = "monitor.json"


class MonitorError(ValueError):
    """A monitor folder that cannot be used as asked; the message says what to do."""


def builtin_folder() -> Path:
    """Where the builtin monitors live: the latentcode cache, never the package or git
    (``latentcode.integrations.builtin`` writes them there)."""
    from ..lm import cache_dir

    return cache_dir() / "monitors"


def builtin_names() -> list[str]:
    root = builtin_folder()
    return sorted(p.name for p in root.iterdir() if (p / "detector.json").is_file()) if root.is_dir() else []


def resolve(path: str) -> Path:
    """A folder, or ``builtin:NAME`` (a monitor in :func:`builtin_folder`)."""
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX):]
        folder = builtin_folder() / name
        if not (folder / "detector.json").is_file():
            have = builtin_names()
            raise MonitorError(f"no builtin monitor {name!r} in {builtin_folder()}; " + (
                f"builtin monitors: {', '.join(have)}" if have else
                "none made yet: run `make monitors` (python -m latentcode.integrations.builtin)"))
        return folder
    folder = Path(path).expanduser()
    if not (folder / "detector.json").is_file():
        raise MonitorError(f"{folder}: no detector.json here. Give a folder written by "
                           "`latentcode detect --save DIR` (one folder per detector, DIR/NAME) "
                           f"or builtin:NAME ({', '.join(builtin_names()) or 'none made yet: make monitors'})")
    return folder


@lru_cache(maxsize=4)
def _shared_lm(model: str | None, device: str | None):
    """One loaded model per (name, device) for every monitor of this process."""
    from ..lm import load_lm

    return load_lm(model, device=device)


@dataclass
class Monitor:
    """A fitted detector, the model it reads under, and its threshold (``None``: not set)."""

    detector: object
    folder: Path
    threshold: float | None = None
    threshold_source: str = "not set"
    info: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.detector.name

    def describe(self) -> dict:
        """What a host tool stores beside each score (JSON-safe)."""
        params = {k: v for k, v in self.detector.get_params().items() if k != "lm"}
        return {"detector": self.name, "params": json.loads(json.dumps(params, default=str)),
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "monitor": str(self.folder), "model": self.info.get("model")}

    def suspicion(self, items: Sequence[Transcript | tuple[str, str]]) -> np.ndarray:
        """One score per transcript or ``(prompt, text)`` pair; higher is more suspicious.
        Thread-safe: host tools call from worker threads, and one model serves them one
        batch at a time."""
        transcripts = [x if isinstance(x, Transcript) else
                       Transcript(id=f"m{i}", prompt=x[0] or "", text=x[1] or "")
                       for i, x in enumerate(items)]
        with self._lock:
            return np.asarray(self.detector.score(transcripts), dtype=float)

    def flagged(self, score: float) -> bool | None:
        return None if self.threshold is None else bool(score > self.threshold)


def load_monitor(path: str, *, model: str | None = None, device: str | None = "cpu",
                 threshold: float | None = None) -> Monitor:
    """Load a fitted detector folder (or ``builtin:NAME``) as a monitor.

    ``model`` overrides the model in ``monitor.json`` (``None``: that one, else the embedded
    model); a detector fitted under one model and read under another is refused, since its
    scores would not mean what its calibration says. ``threshold`` overrides the calibrated one.
    """
    from detectors import DETECTORS, load_detector
    from detectors.base import DetectorError, read_saved

    try:
        folder, saved = read_saved(resolve(path))
    except DetectorError as err:
        raise MonitorError(str(err)) from None
    info = read_info(folder)
    name = saved["detector"]
    factory = DETECTORS.get(name)
    if factory is None:
        raise MonitorError(f"{folder}: detector {name!r} is not registered in this latentcode")
    if getattr(factory, "reads_policy", False):
        raise MonitorError(f"{folder}: {name} reads a trained sender's activations; load it with "
                           "`latentcode detect --policy RUN`, not as a monitor")
    lm = None
    if getattr(factory, "needs_lm", False):
        fitted_under = info.get("model")
        if model is not None and fitted_under and model_label(model) != fitted_under:
            raise MonitorError(f"{folder}: fitted under {fitted_under!r}, asked to read under "
                               f"{model!r}; refit it under that model (latentcode detect --save)")
        lm = _shared_lm(model if model is not None else stored_model(fitted_under), device)
    try:
        detector = load_detector(folder, lm=lm, saved=saved)
    except DetectorError as err:
        raise MonitorError(str(err)) from None
    if threshold is not None:
        chosen, where = float(threshold), "given"
    elif info.get("threshold") is not None:
        chosen, where = float(info["threshold"]), info.get("threshold_source", MONITOR_FILE)
    else:
        chosen, where = None, "not set: pass a threshold"
    return Monitor(detector=detector, folder=folder, threshold=chosen, threshold_source=where,
                   info=info)


def read_info(folder: Path) -> dict:
    """A monitor folder's ``monitor.json`` (empty for a plain ``detect --save`` folder)."""
    path = folder / MONITOR_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def model_label(model: str) -> str:
    from ..lm import EMBEDDED_NAME

    return EMBEDDED_NAME if model in ("", "embedded") else str(model)


def stored_model(name: str | None) -> str | None:
    """What to pass to ``load_lm`` for a recorded model name (``None``: the embedded one)."""
    from ..lm import EMBEDDED_NAME

    return None if name in (None, "", EMBEDDED_NAME) else name


def save_monitor(detector, folder: str | Path, *, model: str | None = None,
                 clean_scores: Sequence[float] | None = None, fpr: float = 0.05,
                 calibrated_on: str = "") -> Path:
    """Save ``detector`` with its ``monitor.json``: the model's name and, given scores of clean
    text the detector was *not* fitted on, the threshold flagging ``fpr`` of them. ``model``
    is the name of the model it reads under (``LM.name``; ``None`` for detectors that read no
    model)."""
    folder = Path(folder)
    detector.save(folder)
    info: dict = {"model": model}
    if clean_scores is not None and len(clean_scores):
        scores = np.asarray(clean_scores, dtype=float)
        info.update(threshold=float(np.quantile(scores, 1 - fpr)), fpr=fpr,
                    n_clean=len(scores), clean_std=float(scores.std()),
                    threshold_source=f"{1 - fpr:.0%} quantile of {len(scores)} clean "
                                     f"texts{' (' + calibrated_on + ')' if calibrated_on else ''}")
    write_json(folder / MONITOR_FILE, info)
    return folder
