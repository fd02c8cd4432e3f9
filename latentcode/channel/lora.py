"""Which layers a LoRA adapter wraps, for any causal LM.

Layer names differ by architecture (Llama's ``q_proj``/``v_proj``, GPT-2's ``c_attn``,
GPT-NeoX's ``query_key_value``), so a fixed default stops every model but one. With no
targets asked for, the adapter follows peft's table of per-architecture defaults, and where
the table has no entry, wraps every linear layer but the output head (peft's ``all-linear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The distinct last name segments of the linear layers (what ``target_modules`` matches),
    GPT-2's ``Conv1D`` included."""
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D))})


def wraps_conv1d(model: torch.nn.Module, targets: Sequence[str] | str) -> bool:
    """Whether the targets are GPT-2-style ``Conv1D`` layers (weights stored transposed: peft's
    ``fan_in_fan_out``)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) and (targets == "all-linear"
                                               or name.rsplit(".", 1)[-1] in targets)
               for name, module in model.named_modules())


def lora_targets(model: torch.nn.Module, requested: Sequence[str] = ()) -> list[str] | str:
    """``requested`` when every name is a layer of ``model``; with none requested, the
    architecture's default. A name that matches nothing fails here, with the names that would
    match, rather than deep inside peft."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", "") or "unknown"
    if not requested:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, [])) \
            or "all-linear"
    names = linear_layer_names(model)
    missing = [t for t in requested if t not in names]
    if missing:
        raise ValueError(
            f"sender.lora_targets {missing} are not layers of this {model_type} model; its "
            f"linear layers are {names}. Name some of those, or leave lora_targets empty for "
            "the architecture's default")
    return list(requested)
