"""The interface every reference codec shares, and its batched encoding loop.

A codec is defined by two per-step functions over the model's next-token distribution:

- ``encode_step(p, state) -> token``: choose a token that carries channel bits;
- ``decode_step(p, state, table, text, cursor) -> options``: every token the sender could have
  chosen that matches the *text* at ``cursor`` (bytes), with the channel bits each carried.

The rest has a module each: the batched encoding loop is here (one forward pass per step for
the whole batch, KV cache kept, via :func:`latentcode.generation.decode_loop`); the step
distributions and their quantization are in :mod:`.distributions`, the token tables in
:mod:`.tokens`, the per-transcript state in :mod:`.state`, framing (length, check, CRC) in
:mod:`.framing`, and the receiver's search over the readings of a text in :mod:`.search`.
Exact decoding needs the receiver's distributions to match the sender's to the last bit, though
the sender computes them in batches and the receiver one row at a time: codecs run the LM in
float64 inside :func:`.numerics.exact_forward`, and :func:`.distributions.step_probs` rounds
the logits to a grid coarser than what remains of the difference.

A new codec subclasses :class:`Codec` in a module of its own and registers itself in
``codecs/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from ..generation import decode_loop
from ..lm import LM
from ..prompts import Prompt
from ..transcripts import Transcript
from .distributions import LOGIT_GRID, entropy_bits, quantize, quantized_kl, step_probs
from .framing import ChannelBits, frame_bits
from .numerics import exact_forward
from .search import search_text
from .state import CodecError, DecodeResult, Option, RowState
from .tokens import TokenTable, token_table

__all__ = [  # the codecs' toolkit, importable from here as before the split
    "LOGIT_GRID", "Codec", "CodecError", "DecodeResult", "Option", "RowState", "TokenTable",
    "entropy_bits", "quantize", "quantized_kl", "step_probs", "token_table",
]


class Codec(ABC):
    """A steganographic codec with a shared key and an exact decoder."""

    name = "codec"
    carries_payload = True  # False for the null codec (a control with label 0)

    def __init__(self, *, temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0:
            raise CodecError(f"temperature must be > 0 for a codec, got {temperature}")
        if not 0 < top_p <= 1:
            raise CodecError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_p = temperature, top_p

    def params(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p}

    # -- per step, implemented by each codec
    @abstractmethod
    def encode_step(self, p: np.ndarray, state: RowState, table: TokenTable) -> int: ...

    @abstractmethod
    def decode_step(self, p: np.ndarray, state: RowState, table: TokenTable,
                    text: bytes, cursor: int) -> list[Option]:
        """Every token the sender could have sent here that matches the text, best first."""

    def plain_step(self, p: np.ndarray, state: RowState) -> int:
        """After the frame: ordinary sampling with keyed randomness (no bits)."""
        cdf = np.cumsum(p)
        i = int(np.searchsorted(cdf, state.rng("plain").uniform() * cdf[-1], side="right"))
        return min(i, int(np.flatnonzero(p > 0)[-1]))  # the first token whose mass covers u

    # -- shared loops
    def in_flight_bits(self, state: RowState) -> float:
        """Information already fixed by the tokens but not yet a whole channel bit (a codec
        that decodes bits in blocks or intervals overrides this); counted in capacity only."""
        return 0.0

    def _probs(self, logits: torch.Tensor, state: RowState, table: TokenTable,
               stop_ids: list[int], *, final: bool = False) -> np.ndarray:
        """The step distribution both sides use: valid UTF-8 continuations only; no stop while
        a frame is being embedded or read, nor inside a character; on the last step after the
        frame, a token that finishes the character (so no bytes of the text are dropped)."""
        allowed = table.allowed(state.utf8).copy()
        if final and not (state.embedding or state.receiving):
            ends = allowed & (table.utf8_next[state.utf8] == 0)
            if ends.any():
                allowed = ends
        allowed[stop_ids] = not (state.embedding or state.receiving) and state.utf8 == 0
        logits = logits.detach().cpu().numpy()
        if len(logits) > len(allowed):  # embedding rows padded past the tokenizer (Qwen, ...)
            allowed = np.concatenate([allowed, np.zeros(len(logits) - len(allowed), dtype=bool)])
        return step_probs(logits, self.temperature, self.top_p, allowed[: len(logits)])

    def encode(
        self,
        lm: LM,
        prompts: Sequence[Prompt | str],
        payloads: Sequence[str],
        key: bytes,
        *,
        max_new_tokens: int = 128,
        batch_size: int = 16,
        ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[Transcript]:
        """Hide ``payloads[i]`` in a response to ``prompts[i]``; one transcript each.

        The transcript id is the nonce of the keyed streams, so a receiver needs the key and
        the id. ``meta`` records bits embedded, tokens, summed entropy and KL; a transcript
        whose text ended before its frame did has ``meta["complete"] = False``.
        """
        _require_float64(lm)
        if len(prompts) != len(payloads):
            raise CodecError(f"{len(prompts)} prompts but {len(payloads)} payloads")
        prompts = [p if isinstance(p, Prompt) else Prompt(f"prompt-{i}", p) for i, p in enumerate(prompts)]
        ids = list(ids) if ids is not None else [f"{self.name}-{i:05d}" for i in range(len(prompts))]
        table, stop_ids = token_table(lm), lm.stop_ids
        states = []
        for i, payload in enumerate(payloads):
            frame = frame_bits(payload)
            states.append(RowState(key, ids[i], channel=ChannelBits(frame, key, ids[i]),
                                   frame_len=len(frame)))
        embedded_steps = [0] * len(states)
        text_bytes = [0] * len(states)
        frame_end: list[int | None] = [None] * len(states)  # bytes of text the frame needs

        def choose(logits, rows, step):
            out = []
            for j, r in enumerate(rows):
                st = states[r]
                st.step = step
                p = self._probs(logits[j], st, table, stop_ids, final=step == max_new_tokens - 1)
                if st.embedding:
                    st.entropy += entropy_bits(p)
                    embedded_steps[r] += 1
                    token = self.encode_step(p, st, table)
                else:
                    token = self.plain_step(p, st)
                if token not in stop_ids:
                    st.utf8 = int(table.utf8_next[st.utf8, token])
                    if st.embedding or frame_end[r] is None:
                        text_bytes[r] += len(table.bytes[token])
                    if not st.embedding and frame_end[r] is None:
                        frame_end[r] = text_bytes[r]
                out.append(token)
            return out

        with exact_forward():
            gens = decode_loop(lm, lm.prompt_ids([p.prompt for p in prompts]), choose,
                               max_new_tokens=max_new_tokens, min_new_tokens=0,
                               batch_size=batch_size,
                               progress=f"encoding ({self.name})" if progress else False)
        out = []
        for i, (prompt, gen, st) in enumerate(zip(prompts, gens, states)):
            raw = b"".join(table.bytes[t] for t in gen.tokens if t not in stop_ids)
            text = raw.decode("utf-8", errors="ignore")  # only a cut final character is lost
            n_payload = len(payloads[i])
            complete = (st.sent >= st.frame_len and len(text.encode("utf-8")) >= frame_end[i]
                        if self.carries_payload else True)
            if not text:
                raise CodecError(
                    f"response {i} ({ids[i]}) has no complete character in {len(gen.tokens)} "
                    "tokens: raise max_new_tokens")
            out.append(Transcript(
                id=ids[i], prompt=prompt.prompt, text=text,
                label=int(self.carries_payload),
                payload=payloads[i] if self.carries_payload else None, source=self.name,
                meta={
                    "codec": self.name, "codec_params": self.params(), "model": lm.name,
                    "prompt_id": prompt.id, "category": prompt.category,
                    "n_tokens": len(gen.tokens), "finished": gen.finished,
                    "complete": complete,
                    "payload_bits": n_payload if self.carries_payload else 0,
                    "frame_bits": st.frame_len if self.carries_payload else 0,
                    "bits_embedded": min(st.sent, st.frame_len),
                    "bits_in_flight": round(self.in_flight_bits(st), 6)
                    if st.sent < st.frame_len and self.carries_payload else 0.0,
                    "embedding_tokens": embedded_steps[i],
                    "entropy_bits": round(st.entropy, 6),
                    "kl_nats": round(st.kl, 9),
                    "max_new_tokens": max_new_tokens,
                },
            ))
        return out

    @torch.inference_mode()
    def decode(self, lm: LM, transcript: Transcript, key: bytes, *,
               max_backtracks: int = 512, max_forward_tokens: int | None = None) -> DecodeResult:
        """Recover the payload from the transcript's text, prompt and id (never its tokens).

        Tokenizers are not injective, so more than one token the sender could have sent may
        match the text at a step. The receiver follows the most likely reading (ranked by a
        one-step lookahead) and keeps the others; when a reading dies (no token fits the text,
        a frame header that fails its check, a CRC mismatch) it resumes the kept alternative
        with the smallest likelihood deficit over all steps (a best-first, limited-discrepancy
        search), at most ``max_backtracks`` times (a quarter of that while no reading has passed
        the frame header's check, as with a wrong key) and within ``max_forward_tokens`` tokens
        of model computation (default: 16 times the text's length in bytes, plus 512).
        """
        _require_float64(lm)
        with exact_forward():
            return search_text(self, lm, transcript, key, max_backtracks, max_forward_tokens)


def _require_float64(lm: LM) -> None:
    dtype = next(lm.model.parameters()).dtype
    if dtype != torch.float64:
        raise CodecError(
            f"codecs need the model in float64 for exact decoding (got {dtype}): load it with "
            "load_lm(..., dtype=torch.float64) or call lm.model.double()"
        )
