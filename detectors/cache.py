"""A bounded, per-process cache of per-transcript forward-pass results.

Several detectors read the same model over the same texts (the distribution statistics, a
probe fitted per source); the cache lets the second one skip the forward pass. Keys carry the
model's weights version (the sum of its parameters' in-place update counters), dtype and
active adapter, so an optimizer step, a cast or an adapter switched off between calls (an
overseer inside RL training, a white-box monitor reading the sender) never serves stale
results.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from latentcode.lm import LM


def adapter_state(model) -> tuple:
    """Which LoRA adapter a peft model runs with, and whether adapters are switched off (a
    sender's reference): the same weights compute another function under each."""
    active = getattr(model, "active_adapter", None)
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "disable_adapters"):
            return (str(active), bool(module.disable_adapters))
    return (str(active), None)


def model_state(model) -> tuple:
    """Changes whenever a parameter is updated in place, the model is cast or replaced, or
    another adapter (or none) is switched on."""
    params = list(model.parameters())
    return (str(params[0].dtype) if params else None,
            sum(p._version for p in params), tuple(p.data_ptr() for p in params[:2]),
            adapter_state(model))


_all: list[ForwardCache] = []


def clear_all() -> None:
    """Empty every forward cache (benchmarks that time cold scoring call this)."""
    for cache in _all:
        cache.clear()


class ForwardCache:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        _all.append(self)

    @staticmethod
    def model_key(lm: LM) -> tuple:
        """Call once per batch of lookups: the weights version costs a pass over parameters."""
        return (id(lm.model), lm.name, model_state(lm.model))

    def get(self, key: Hashable):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: Hashable, value) -> None:
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
