"""Detectors: everything that scores transcripts (higher = more suspicious).

Each detector is a module with one class and the factories that register it by name; importing
this package registers them all. To add one: write the module, decorate its factory with
``@register("name")``, import the module below.
"""

from . import classifier, distribution, overseer, probe  # noqa: F401  (importing registers the factories)
from .base import DETECTORS, Detector, DetectorError, load_detector, make_detector, register

__all__ = ["DETECTORS", "Detector", "DetectorError", "load_detector", "make_detector", "register"]
