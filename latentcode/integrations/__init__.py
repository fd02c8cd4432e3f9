"""latentcode inside the tools safety researchers already run.

- ``monitor.py``: a fitted detector folder (or ``builtin:NAME``) with its model and threshold,
  what every integration below loads.
- ``inspect_scorer.py``: inspect_ai scorers (``latentcode/detector``) and their metrics.
- ``scout.py``: an Inspect Scout scanner over transcripts.
- ``control_arena.py``: a ControlArena monitor.

Each host is an optional extra; importing this package imports none of them.
"""
