"""A host tool's conversation as one of our transcripts, read the way the transcript reader
reads the chat form: the last assistant message is the text, the user message before it the
prompt (``latentcode.transcripts.parse_transcript`` does the mapping; nothing is re-parsed here)."""

from __future__ import annotations

from collections.abc import Sequence

from ..transcripts import Transcript, parse_transcript

ROLES = ("system", "user", "assistant")


def transcript_from_chat(messages: Sequence[tuple[str, str]], *, completion: str = "",
                         id: str = "sample") -> Transcript | None:
    """``(role, text)`` pairs (tool messages are left out) as a transcript; ``completion``
    stands in when no assistant message has text. ``None`` when there is nothing to score."""
    # an assistant turn of tool calls only says nothing: score the last one that said something
    chat = [{"role": role, "content": text or ""} for role, text in messages
            if role in ROLES and not (role == "assistant" and not (text or "").strip())]
    if not any(m["role"] == "assistant" for m in chat):
        if not completion.strip():
            return None
        chat.append({"role": "assistant", "content": completion})
    transcript, _problems = parse_transcript({"id": id or "sample", "messages": chat}, "chat", 1)
    if transcript is None or not transcript.text.strip():
        return None
    return transcript
