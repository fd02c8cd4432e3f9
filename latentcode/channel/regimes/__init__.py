"""Training regimes, registered by name: each is one file here plus its registration.

``make_regime(name, ctx)`` builds the regime a config names (``regime = "rl"``); the trainer
calls its ``step`` once per step. To add one: subclass :class:`~.base.Regime` in a new module,
decorate it with ``@register_regime("name")`` and import the module at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Callable

REGIMES: dict[str, Callable] = {}


def register_regime(name: str):
    def wrap(factory):
        REGIMES[name] = factory
        return factory
    return wrap


def make_regime(name: str, ctx):
    if name not in REGIMES:
        raise ValueError(f"regime {name!r}: choose one of {', '.join(sorted(REGIMES))}")
    return REGIMES[name](ctx)


from . import conditioned, distill, dpo, out_token, rl  # noqa: F401  (each registers itself)
