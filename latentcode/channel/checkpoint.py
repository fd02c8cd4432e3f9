"""Checkpoints without pickles: adapter weights and optimizer moments as safetensors, the rest
as JSON, written into a temporary folder and renamed into place (a crash mid-write leaves the
previous checkpoint whole).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..jsonl import atomic_dir
from .sender import Sender


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{slot}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    for key, value in meta["scalars"].items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, step: int, sender: Sender, optimizer: torch.optim.Optimizer,
                    extra: dict, receiver=None, overseers=()) -> Path:
    """``receiver``: one with weights of its own (``save``/``load``, the LM receiver) writes
    them into ``receiver/`` of the same atomic folder; so does each overseer with a state of
    its own (an adaptive monitor), into ``overseers/<name>/``."""
    from peft import get_peft_model_state_dict

    with atomic_dir(folder) as tmp:
        adapter = {k: v.detach().cpu().contiguous()
                   for k, v in get_peft_model_state_dict(sender.model).items()}
        save_file(adapter, str(tmp / "adapter.safetensors"))
        tensors, meta = optimizer_tensors(optimizer)
        if tensors:
            save_file(tensors, str(tmp / "optimizer.safetensors"))
        if hasattr(receiver, "save"):
            receiver.save(tmp / "receiver")
        for overseer in overseers:
            if hasattr(overseer, "save"):
                overseer.save(tmp / "overseers" / overseer.name)
        (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": meta, **extra},
                                                   allow_nan=False) + "\n")
    return folder


def load_checkpoint(folder: Path, sender: Sender, optimizer: torch.optim.Optimizer,
                    receiver=None, overseers=()) -> dict:
    """Restore adapter and optimizer (and a receiver's own weights) in place; return the
    JSON state (step and extras)."""
    from peft import set_peft_model_state_dict

    state = json.loads((folder / "state.json").read_text())
    set_peft_model_state_dict(sender.model, load_file(str(folder / "adapter.safetensors")))
    moments = folder / "optimizer.safetensors"
    load_optimizer(optimizer, load_file(str(moments)) if moments.is_file() else {},
                    state["optimizer"])
    if hasattr(receiver, "load"):
        if not (folder / "receiver").is_dir():
            raise ValueError(f"{folder}: this checkpoint holds no receiver weights, but the run's "
                             f"receiver ({receiver.name}) has its own; was the config changed?")
        receiver.load(folder / "receiver")
    for overseer in overseers:
        if hasattr(overseer, "load"):
            where = folder / "overseers" / overseer.name
            if not where.is_dir():
                raise ValueError(f"{folder}: this checkpoint holds no state for the adaptive "
                                 f"overseer {overseer.name}; was the config changed?")
            overseer.load(where)
    return state
