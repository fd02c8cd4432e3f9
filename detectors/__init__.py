"""Detectors: everything that scores transcripts (higher = more suspicious).

Each detector is a module with one class and the factories that register it by name; importing
this package registers them all. To add one: write the module, decorate its factory with
``@register("name")``, import the module below.
"""

from . import (  # noqa: F401  (importing registers the factories)
    classifier,
    distribution,
    encoder_classifier,
    format_check,
    inspect_judge,
    overseer,
    paraphrase,
    periodic,
    probe,
    stats_classifier,
    string_match,
    truncation,
)
from .base import DETECTORS, Detector, DetectorError, load_detector, make_detector, register

__all__ = ["DETECTORS", "Detector", "DetectorError", "load_detector", "make_detector", "register"]
