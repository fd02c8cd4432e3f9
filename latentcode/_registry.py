"""inspect_ai's entry point into latentcode (group ``inspect_ai``, name ``latentcode``): importing
this registers ``latentcode/detector`` (a scorer) and, with inspect-scout installed,
``latentcode/detector_scanner`` (a Scout scanner)."""

from importlib.util import find_spec

from .integrations.inspect_scorer import auroc, detector, flag_rate  # noqa: F401 (registers)

if find_spec("inspect_scout") is not None:
    from .integrations.scout import detector_scanner  # noqa: F401 (registers)
