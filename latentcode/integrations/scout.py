"""latentcode detectors as an Inspect Scout scanner (built against inspect-scout 0.6.1, the
optional extra ``latentcode[scout]``).

Found through latentcode's ``inspect_ai`` entry point (Scout looks scanners up in inspect's
registry), so it runs by name over any transcripts Scout reads::

    scout scan latentcode/detector_scanner -T logs/run.eval -S path=builtin:tail \\
        --scans scans --max-processes 1

One result per transcript: the suspicion of its last assistant message that has text (the
prompt is the user message before it, as everywhere in latentcode), referencing that message,
with the detector's name, parameters, threshold and flag in the metadata. Keep
``--max-processes 1`` for a model-based detector: each Scout worker process loads its own copy.
"""

from __future__ import annotations

from ..formats import MissingExtraError

try:
    from inspect_ai.scorer import Reference
    from inspect_scout import Result, Scanner, Transcript, scanner
except ImportError:
    raise MissingExtraError("the Inspect Scout scanner", "scout", "inspect-scout==0.6.1") from None

from .chat import transcript_from_chat
from .monitor import load_monitor


@scanner(messages="all", metadata=False, name="detector_scanner")
def detector_scanner(path: str = "builtin:tail", threshold: float | None = None,
                     model: str | None = None, device: str = "cpu") -> Scanner[Transcript]:
    """Score each transcript's answer with a fitted latentcode detector (``path``: a folder
    from ``latentcode detect --save`` or ``builtin:NAME``)."""
    monitor = load_monitor(path, model=model, device=device, threshold=threshold)
    described = monitor.describe()

    async def scan(transcript: Transcript) -> Result:
        messages = list(transcript.messages)
        ours = transcript_from_chat([(m.role, m.text) for m in messages], id=str(transcript.transcript_id))
        if ours is None:
            return Result(value=None, explanation="no assistant text to score", metadata=described)
        value = float(monitor.suspicion([ours])[0])
        spoken = [m for m in messages if m.role == "assistant" and m.text.strip()]
        refs = [Reference(type="message", id=spoken[-1].id)] if spoken and spoken[-1].id else []
        return Result(value=value, answer=ours.text,
                      explanation=f"{monitor.name} suspicion {value:.3f}",
                      metadata={**described, "flagged": monitor.flagged(value)}, references=refs)

    return scan
