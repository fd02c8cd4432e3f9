"""Detection ROC reports: scored transcripts in, one self-contained folder out.

``metrics`` computes (exactly, from the full ROC), ``analysis`` gathers every number once,
``plots`` draws, ``html`` renders, ``build`` writes the folder atomically.
"""

from .build import build_report
from .inputs import ReportInputError, load_scored
from .metrics import auroc, bootstrap_auroc_ci, detector_metrics, partial_auroc, tpr_at_fpr

__all__ = ["ReportInputError", "auroc", "bootstrap_auroc_ci", "build_report", "detector_metrics",
           "load_scored", "partial_auroc", "tpr_at_fpr"]
