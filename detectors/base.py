"""What every detector shares: scikit-learn's conventions, a registry of factories, and safe files.

A detector is a small class. Its parameters are the arguments of ``__init__`` (kept as
attributes of the same name), everything it learns is an attribute with a trailing underscore,
``fit(transcripts, labels=None)`` returns ``self`` and ``score(transcripts)`` returns one float per
transcript, higher meaning more suspicious. The language model is passed in (``lm=``), never
loaded inside, so one loaded model serves every detector of a run.

Detectors are made by plain factory functions registered by name (inspect_ai's pattern), so a
config, ``latentcode detect --detectors a,b`` or a report can rebuild one from its name and its
parameters. ``save`` writes a folder of JSON and safetensors; ``load`` never unpickles.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from latentcode.jsonl import atomic_dir
from latentcode.transcripts import Transcript

FORMAT_VERSION = 1


class DetectorError(ValueError):
    """Input a detector cannot work with, or a detector used before it was fitted."""


class Detector:
    """Base class: parameter handling, input checks, and safe save/load of learned state."""

    name = "detector"
    needs_lm = False  # scores come from a language model passed as ``lm=``
    needs_labels = False  # fit() needs labels (supervised); otherwise it fits on clean text

    # -- parameters (scikit-learn style)
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items()
                if n not in ("self", "lm") and p.kind is not p.VAR_KEYWORD]

    def get_params(self) -> dict:
        return {n: getattr(self, n) for n in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the estimator API
    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None) -> Detector:
        raise NotImplementedError

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        raise NotImplementedError

    # -- learned state
    def learned_state(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    @property
    def is_fitted(self) -> bool:
        return bool(self.learned_state())

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise DetectorError(f"detector {self.name!r} is not fitted: call fit() or load() first")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``detector.json`` (name, parameters, scalar state) and ``state.safetensors``
        (arrays) into the folder ``path``, atomically: a reader sees the old folder or the new."""
        from safetensors.numpy import save_file

        self.check_fitted()
        arrays, plain = {}, {}
        for key, value in self.learned_state().items():
            if isinstance(value, np.ndarray):
                arrays[key] = np.ascontiguousarray(value)
            elif isinstance(value, dict) and value and all(
                    isinstance(v, np.ndarray) for v in value.values()):
                for sub, array in value.items():  # named tensors: "key/name" in safetensors
                    arrays[f"{key}/{sub}"] = np.ascontiguousarray(array)
            else:
                plain[key] = value
        target = Path(path)
        with atomic_dir(target) as tmp:
            doc = {"format": FORMAT_VERSION, "detector": self.name,
                   "params": factory_params(self.name, self.get_params()), "state": plain}
            (tmp / "detector.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
            if arrays:
                save_file(arrays, str(tmp / "state.safetensors"))
        return target

    def _set_state(self, state: dict) -> None:
        for key, value in state.items():
            if not key.endswith("_"):
                raise DetectorError(f"learned state must end with '_', got {key!r}")
            setattr(self, key, value)


class ZScoredOnClean(Detector):
    """An unsupervised detector whose ``raw_scores`` are read as z-scores against clean
    reference text: ``fit`` learns only their mean and spread on the clean transcripts."""

    def raw_scores(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        raise NotImplementedError

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        raw = self.raw_scores(clean_reference(transcripts, labels))
        self.reference_mean_ = float(raw.mean())
        self.reference_std_ = float(raw.std()) if len(raw) > 1 and raw.std() > 0 else 1.0
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        return (self.raw_scores(transcripts) - self.reference_mean_) / self.reference_std_


# --------------------------------------------------------------------------- registry

Factory = Callable[..., Detector]
DETECTORS: dict[str, Factory] = {}


def register(name: str, *, needs_lm: bool = False) -> Callable[[Factory], Factory]:
    """Register a factory under ``name`` (the detector's name in configs, scores and reports);
    ``needs_lm`` tells a caller to load a language model before making it."""

    def wrap(factory: Factory) -> Factory:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        factory.needs_lm = needs_lm
        DETECTORS[name] = factory
        return factory

    return wrap


def factory_params(name: str, params: dict) -> dict:
    """The parameters the factory registered as ``name`` takes (an alias may fix some)."""
    if name not in DETECTORS:
        raise DetectorError(f"detector {name!r} is not registered: register its factory to save it")
    accepted = inspect.signature(DETECTORS[name]).parameters
    return {k: v for k, v in params.items() if k in accepted and k != "lm"}


def make_detector(name: str, lm=None, **params) -> Detector:
    if name not in DETECTORS:
        raise DetectorError(f"unknown detector {name!r}; choose from {', '.join(sorted(DETECTORS))}")
    factory = DETECTORS[name]
    if "lm" in inspect.signature(factory).parameters:
        params["lm"] = lm
    detector = factory(**params)
    detector.name = name  # the registered name: what scores, configs and save() use
    if detector.needs_lm and getattr(detector, "lm", None) is None:
        raise DetectorError(f"detector {name!r} needs a language model: pass lm=")
    return detector


def read_saved(path: str | os.PathLike) -> tuple[Path, dict]:
    """A saved detector's folder and its checked ``detector.json`` (read once: a fitted tfidf's
    vocabulary makes it a megabyte), for a caller that needs the name before building it."""
    folder = Path(path)
    meta_file = folder / "detector.json"
    if not meta_file.is_file():
        raise DetectorError(f"{folder}: no detector.json here; is this a folder made by save()?")
    try:
        doc = json.loads(meta_file.read_text())
    except ValueError as exc:
        raise DetectorError(f"{meta_file}: not a detector file ({exc})") from None
    missing = {"detector", "params", "state"} - (doc.keys() if isinstance(doc, dict) else set())
    if missing:
        raise DetectorError(f"{meta_file}: not a detector file (no {', '.join(sorted(missing))})")
    if doc.get("format") != FORMAT_VERSION:
        raise DetectorError(f"{meta_file}: format {doc.get('format')!r}, this version reads {FORMAT_VERSION}")
    return folder, doc


def load_detector(path: str | os.PathLike, lm=None, *, saved: dict | None = None) -> Detector:
    """Rebuild a saved detector from its folder (JSON and safetensors only, never a pickle);
    ``saved``: its ``detector.json`` as :func:`read_saved` returned it, not read again."""
    from safetensors.numpy import load_file

    folder, doc = (Path(path), saved) if saved is not None else read_saved(path)
    detector = make_detector(doc["detector"], lm=lm, **doc["params"])
    state = doc["state"]
    arrays = folder / "state.safetensors"
    if arrays.is_file():
        state = dict(state)
        for key, array in load_file(str(arrays)).items():
            if "/" in key:
                group, sub = key.split("/", 1)
                state.setdefault(group, {})[sub] = array
            else:
                state[key] = array
    detector._set_state(state)
    return detector


# ---------------------------------------------------------------------------- inputs


def check_transcripts(transcripts: Sequence[Transcript], what: str = "transcripts") -> list[Transcript]:
    transcripts = list(transcripts)
    if not transcripts:
        raise DetectorError(f"no {what}: give at least one transcript")
    bad = [t.id for t in transcripts if not isinstance(t, Transcript)]
    if bad:
        raise DetectorError(f"{what} must be Transcript records")
    return transcripts


def labels_of(transcripts: Sequence[Transcript], labels: Sequence[int] | None,
              *, both_classes: bool = True) -> np.ndarray:
    """Labels given, or else the transcripts' own; every one must be 0 or 1."""
    if labels is None:
        missing = [t.id for t in transcripts if t.label is None]
        if missing:
            raise DetectorError(f"{len(missing)} transcripts have no label (first: {missing[0]!r}); "
                                "pass labels= or label the transcripts")
        labels = [t.label for t in transcripts]
    y = np.asarray(labels)
    if len(y) != len(transcripts):
        raise DetectorError(f"{len(transcripts)} transcripts but {len(y)} labels")
    if not np.isin(y, (0, 1)).all():
        raise DetectorError("labels must be 0 (clean) or 1 (carries a payload)")
    if both_classes and len(np.unique(y)) < 2:
        raise DetectorError(f"fitting needs both classes, got only label {int(y[0])}")
    return y.astype(np.int64)


def clean_reference(transcripts: Sequence[Transcript], labels: Sequence[int] | None) -> list[Transcript]:
    """The clean transcripts an unsupervised detector fits on: label 0 when labels are known,
    every transcript when none is labelled (the caller says they are clean)."""
    transcripts = check_transcripts(transcripts)
    if labels is None and all(t.label is None for t in transcripts):
        return transcripts
    y = labels_of(transcripts, labels, both_classes=False)
    clean = [t for t, label in zip(transcripts, y) if label == 0]
    if not clean:
        raise DetectorError("no clean (label 0) transcripts to fit the reference on")
    return clean
