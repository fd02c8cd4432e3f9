"""The interface every reference codec shares, and the machinery they have in common.

A codec is defined by two per-step functions over the model's next-token distribution:

- ``encode_step(p, state) -> token``: choose a token that carries channel bits;
- ``decode_step(p, state, table, text, cursor) -> options``: every token the sender could have
  chosen that matches the *text* at ``cursor`` (bytes), with the channel bits each carried.

Everything else lives here: the batched encoding loop (one forward pass per step for the whole
batch, KV cache kept, via :func:`latentcode.generation.decode_loop`), the single-transcript
decoding search, framing (length, check, CRC: see :mod:`framing`), and the token tables.

Decoding works from text, never from saved token ids. Tokenizers are not injective (``" the"``
then ``"m"`` and ``" them"`` give the same text), so a decoder cannot simply re-tokenize.
:meth:`Codec.decode` searches the readings instead: the tokenizer's reading first, the others
ranked by a one-step lookahead, backtracking best-first until a frame verifies. Exact
decoding also needs the receiver's distributions to match the sender's to the last bit, though
the sender computes them in batches and the receiver one row at a time: codecs run the LM in
float64 inside :func:`.numerics.exact_forward`, and :func:`step_probs` rounds the logits to a
grid coarser than what remains of the difference.
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ..generation import cache_kwargs, decode_loop, output_cache
from ..lm import LM
from ..payload import KeyedStream, bit_accuracy
from ..prompts import Prompt
from ..transcripts import Transcript
from .framing import CRC_BITS, HEADER_BITS, ChannelBits, FrameReader, frame_bits
from .numerics import exact_forward

LN2 = math.log(2)
# No token carries more than log2(vocab) < 18 bits, and every token has at least one byte, so a
# frame asking for more than this many bits per remaining byte is a wrong reading.
MAX_BITS_PER_BYTE = 18
LOOKAHEAD = 4  # ambiguous readings ranked by a one-step lookahead (the rest by probability)
# Logits are rounded to this grid before anything else (see step_probs): a change of 1e-16
# relative to a logit of order 10 flips a rounding about once in 10**11 tokens that matter.
LOGIT_GRID = 2.0 ** -16


class CodecError(ValueError):
    """Input a codec cannot work with (wrong dtype, unsupported tokenizer, bad payload)."""


# ------------------------------------------------------------------------- token tables


@dataclass(frozen=True)
class TokenTable:
    """Bytes of every token, and which tokens may appear inside stego text."""

    bytes: tuple[bytes, ...]
    special: np.ndarray  # bool[vocab]: added/special tokens (never embedded, never in text)
    utf8_next: np.ndarray  # int8[4, vocab]: UTF-8 decoder state after the token, -1 = invalid
    by_bytes: dict[bytes, int]
    max_len: int

    def allowed(self, utf8_state: int) -> np.ndarray:
        return (self.utf8_next[utf8_state] >= 0) & ~self.special

    def prefixes_of(self, text: bytes, cursor: int) -> list[int]:
        """Every token whose bytes appear in ``text`` at ``cursor``, longest first."""
        found = []
        for n in range(min(self.max_len, len(text) - cursor), 0, -1):
            token = self.by_bytes.get(text[cursor:cursor + n])
            if token is not None:
                found.append(token)
        return found

    def matches_in(self, text: bytes, cursor: int, support: np.ndarray) -> list[tuple[int, int]]:
        """``(token, index in support)`` for every token of ``support`` (a codec's array of
        token ids) whose bytes appear in ``text`` at ``cursor``: the receiver's candidates."""
        found = self.prefixes_of(text, cursor)
        if not found:
            return []
        index = np.full(max(len(self.bytes), int(support.max(initial=0)) + 1), -1, dtype=np.int64)
        index[support] = np.arange(len(support))
        return [(token, int(index[token])) for token in found if index[token] >= 0]


def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-to-unicode map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _utf8_after(data: bytes, state: int) -> int:
    for byte in data:
        if state:
            if byte & 0xC0 != 0x80:
                return -1
            state -= 1
        elif byte < 0x80:
            continue
        elif byte & 0xE0 == 0xC0 and byte >= 0xC2:
            state = 1
        elif byte & 0xF0 == 0xE0:
            state = 2
        elif byte & 0xF8 == 0xF0 and byte <= 0xF4:
            state = 3
        else:
            return -1
    return state


@lru_cache(maxsize=8)
def _token_table(tokenizer) -> TokenTable:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = type(backend.decoder).__name__ if backend is not None else ""
    if decoder != "ByteLevel":
        raise CodecError(
            f"codecs need a byte-level BPE tokenizer (GPT-2, Llama-3, Qwen, SmolLM style); "
            f"this one decodes with {decoder or 'no fast backend'}"
        )
    to_byte = _byte_decoder()
    vocab_size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {}) | set(tokenizer.all_special_ids)
    table, special = [], np.zeros(vocab_size, dtype=bool)
    for i, piece in enumerate(pieces):
        if i in added or piece is None or any(ch not in to_byte for ch in piece):
            table.append(b"")
            special[i] = True
        else:
            table.append(bytes(to_byte[ch] for ch in piece))
    utf8 = np.full((4, vocab_size), -1, dtype=np.int8)
    for s in range(4):
        for i, data in enumerate(table):
            if data:
                utf8[s, i] = _utf8_after(data, s)
    by_bytes = {data: i for i, data in enumerate(table) if data}
    return TokenTable(tuple(table), special, utf8, by_bytes, max(map(len, table)))


def token_table(lm_or_tokenizer) -> TokenTable:
    tok = getattr(lm_or_tokenizer, "tokenizer", lm_or_tokenizer)
    return _token_table(tok)


# --------------------------------------------------------------------- distributions


def step_probs(logits: np.ndarray, temperature: float, top_p: float, allowed: np.ndarray) -> np.ndarray:
    """Next-token distribution (float64, numpy) after temperature, top-p and masking.

    Computed per row with numpy so that sender and receiver, which see the rows in differently
    shaped batches, run the very same arithmetic. The logits are first rounded to a grid of
    ``LOGIT_GRID``: the sender's and the receiver's float64 logits differ in their last bits
    (other batch shapes, other chunking), and interval codecs need the same distribution to the
    last bit on both sides. Without the grid such a difference flips a 2**-32 rounding of the
    CDF about once in 2,000 tokens; with it both sides almost always start from identical
    numbers. Rounding moves each probability by a factor of at most exp(2**-17): a KL to the
    model below 1e-10 nats per token.
    """
    grid = np.round(logits.astype(np.float64) / LOGIT_GRID) * LOGIT_GRID
    z = np.where(allowed, grid / temperature, -np.inf)
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]
        p[order[before >= top_p]] = 0.0
        p /= p.sum()
    return p


def quantize(p: np.ndarray, freq_bits: int, *, by_probability: bool = True,
             top_k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and integer frequencies summing to ``2**freq_bits`` (the interval codecs' view of
    ``p``): most likely first unless ``by_probability`` is False (token-id order), at most
    ``top_k`` tokens (0 = all), tokens that round to zero dropped, the rounding remainder given
    to the largest frequency."""
    tokens = np.flatnonzero(p > 0)
    if by_probability:
        tokens = tokens[np.argsort(-p[tokens], kind="stable")]
    if top_k:
        tokens = tokens[:top_k]
    total = 1 << freq_bits
    freqs = np.floor(p[tokens] / p[tokens].sum() * total).astype(np.int64)
    keep = freqs > 0
    tokens, freqs = tokens[keep], freqs[keep]
    freqs[int(np.argmax(freqs))] += total - int(freqs.sum())
    return tokens, freqs


def quantized_kl(p: np.ndarray, tokens: np.ndarray, freqs: np.ndarray) -> float:
    """KL(quantized distribution || p), nats."""
    q = freqs / float(freqs.sum())
    return float(np.sum(q * (np.log(q) - np.log(p[tokens]))))


def entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


# ----------------------------------------------------------------------------- state


@dataclass
class RowState:
    """Per-transcript state of a sender or a receiver."""

    key: bytes
    nonce: str
    channel: ChannelBits | None = None  # sender: the bits to embed
    receiving: bool = False  # receiver: bits come from the text, not from a payload
    sent: int = 0  # sender: channel bits fixed by the tokens so far
    frame_len: int = 0  # sender: bits of the frame; receiver: known once the header is read
    step: int = 0
    utf8: int = 0
    entropy: float = 0.0  # summed entropy (bits) of the distributions sampled while embedding
    kl: float = 0.0  # summed KL(stego step distribution || model), nats
    extra: dict = field(default_factory=dict)  # codec-specific (e.g. arithmetic interval)

    def rng(self, purpose: str) -> KeyedStream:
        """Shared randomness for this step, identical for sender and receiver."""
        return KeyedStream(self.key, f"{self.nonce}/{purpose}/{self.step}")

    @property
    def embedding(self) -> bool:
        return self.channel is not None and self.sent < self.frame_len


# A receiver's reading of one step: the token, the channel bits it carried, the codec's new
# private state (``RowState.extra``). Several options mean the text is ambiguous here.
Option = tuple[int, list[int], dict]


@dataclass
class DecodeResult:
    """What a receiver got out of one transcript.

    ``status`` is ``ok`` (CRC verified: ``bits`` is the payload), ``partial`` (the text ended
    before the frame did: ``recovered`` holds the unverified payload bits so far) or
    ``failed`` (wrong key, another codec's text, edited text: ``bits`` is None).
    """

    status: str
    bits: str | None
    recovered: str
    message: str
    tokens: int = 0
    backtracks: int = 0
    forward_tokens: int = 0  # tokens the model computed while searching (cost)

    def accuracy(self, true_payload: str) -> float:
        return bit_accuracy(true_payload, self.bits if self.bits is not None else self.recovered)


# ----------------------------------------------------------------------------- codec


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
            return self._decode(lm, transcript, key, max_backtracks, max_forward_tokens)

    def _decode(self, lm, transcript, key, max_backtracks, max_forward_tokens) -> DecodeResult:
        table, stop_ids = token_table(lm), lm.stop_ids
        text = transcript.text.encode("utf-8")
        reader = FrameReader(key, transcript.id)
        model = _Speculator(lm, lm.prompt_ids([transcript.prompt])[0], table, text)
        budget = max_forward_tokens if max_forward_tokens is not None else 16 * len(text) + 512

        def child_state(parent: RowState, token: int, extra: dict) -> RowState:
            return RowState(key, transcript.id, receiving=True, step=parent.step + 1,
                            frame_len=parent.frame_len,
                            utf8=int(table.utf8_next[parent.utf8, token]), extra=extra)

        def rank(options, p, state, path, bits, cursor) -> list[tuple[float, Option]]:
            """Score readings by p(token) times the mass of next tokens the sender could have
            sent that also fit the text; a reading with none is dropped. Options come most
            likely first, and a score never exceeds p(token), so the lookahead stops as soon as
            no later option can beat the best score (the ranking's winner is unchanged)."""
            scored, best = [], 0.0
            for i, option in enumerate(options):
                token, carried, extra = option
                prior = float(p[token])
                nxt = cursor + len(table.bytes[token])
                # after the frame's last bit the sender samples freely: nothing to look ahead at
                if (i >= LOOKAHEAD or prior <= best or nxt >= len(text)
                        or reader.read(bits + carried)[0]):
                    scored.append((prior, option))
                    continue
                child = child_state(state, token, extra)
                p2 = self._probs(model.logits(path + [token], speculate=False), child, table,
                                 stop_ids)
                follow = self.decode_step(p2, child, table, text, nxt)
                mass = sum(float(p2[t]) for t, _, _ in follow)
                if mass > 0:
                    scored.append((prior * mass, option))
                    best = max(best, prior * mass)
            return sorted(scored, key=lambda so: -so[0])

        # (deficit, tie, parent state, parent path, parent bits, parent cursor, option)
        alternatives: list = []
        counter = itertools.count()
        state, path, bits, cursor, deficit = RowState(key, transcript.id, receiving=True), [], [], 0, 0.0
        best_partial, failure, backtracks = "", "the text matches no token", 0
        header_passed = False
        while True:
            complete, payload, recovered = reader.read(bits)
            if len(recovered) > len(best_partial):
                best_partial = recovered
            if complete and payload is not None:
                return DecodeResult("ok", payload, payload, "CRC verified", len(path),
                                    backtracks, model.computed)
            needed = FrameReader.needed(reader.unmask(bits))
            header_passed = header_passed or bool(needed)
            state.frame_len = needed or 0  # a codec may size its last block by the frame
            scored = []
            if needed == 0:
                failure = "frame header failed its check"
            elif complete:
                failure = "CRC mismatch"
            elif (needed is not None and needed - len(bits) - self.in_flight_bits(state)
                  > MAX_BITS_PER_BYTE * (len(text) - cursor)):
                failure = f"frame length {needed - HEADER_BITS - CRC_BITS} cannot fit in the text"
            elif cursor >= len(text):
                failure = "text ended before the frame did"
                if needed:  # a reading that passed the header check ran out of text: truncated
                    break
            elif model.computed > budget:
                failure = f"search budget of {budget} forward tokens spent"
                break
            else:
                p = self._probs(model.logits(path), state, table, stop_ids)
                options = self.decode_step(p, state, table, text, cursor)
                scored = rank(options, p, state, path, bits, cursor) if len(options) > 1 else \
                    [(1.0, o) for o in options]
                if not scored and options:
                    failure = f"byte {cursor}: no reading continues the text"
                elif not options and failure.startswith("the text"):
                    failure = f"byte {cursor}: no token the sender could have sent fits the text"
            if scored:
                # the tokenizer's own reading of the text goes first when it is possible: it
                # is the sender's far more often than a lookahead score alone can tell
                canonical = model.canonical(path)
                at = next((i for i, (_, o) in enumerate(scored) if o[0] == canonical), 0)
                best = scored[0][0]
                scored.insert(0, scored.pop(at))
                for score, option in scored[1:]:
                    gap = math.log(best / score) if score > 0 else math.inf
                    heapq.heappush(alternatives, (deficit + gap, next(counter), state, path, bits,
                                                  cursor, option))
                parent, ppath, pbits, pcursor, option = state, path, bits, cursor, scored[0][1]
            else:
                # a wrong key fails the header check on every reading: give up sooner then
                limit = max_backtracks if header_passed else max(1, max_backtracks // 4)
                if not alternatives or backtracks >= limit:
                    break
                backtracks += 1
                deficit, _, parent, ppath, pbits, pcursor, option = heapq.heappop(alternatives)
            token, carried, extra = option
            state = child_state(parent, token, extra)
            path, bits = ppath + [token], pbits + carried
            cursor = pcursor + len(table.bytes[token])
        if best_partial and failure == "text ended before the frame did":
            return DecodeResult("partial", None, best_partial,
                                f"{failure} (truncated text?): {len(best_partial)} payload bits "
                                "recovered, unverified", len(path), backtracks, model.computed)
        return DecodeResult("failed", None, best_partial,
                            f"{failure}: wrong key, another codec's text, or edited text",
                            len(path), backtracks, model.computed)


class _Speculator:
    """The receiver's model calls, made cheap by guessing the sender's tokens.

    Most of the time the sender's tokens are what the tokenizer would produce for the text, so
    the receiver runs the model once over a whole chunk of that guess (a matrix product per
    layer instead of one vector product per token) and serves each step's logits from it. When
    a reading leaves the guess, the cache is cropped back to the common prefix and a new chunk
    is guessed from there. Single-token lookaheads do not disturb the stored guess.
    """

    CHUNK = 64

    def __init__(self, lm: LM, prompt: list[int], table: TokenTable, text: bytes):
        self.lm, self.prompt, self.table, self.text = lm, prompt, table, text
        out = lm.model(input_ids=torch.tensor([prompt], device=lm.device), use_cache=True)
        self.cache, self.cached = output_cache(out), []  # tokens after the prompt in the cache
        self.root = out.logits[0, -1]
        self.guess: list[int] = []  # the guessed path whose logits rows are stored
        self.rows, self.base = self.root[None], 0  # rows[i]: after prompt + guess[:base + i]
        self.chunk, self.used = self.CHUNK, 0
        self.computed = len(prompt)

    def _forward(self, path: list[int], extra: list[int]) -> torch.Tensor:
        """Logits rows after prompt + path[:n] for n = len(path) ... len(path + extra)."""
        common = 0
        for a, b in zip(self.cached, path):
            if a != b:
                break
            common += 1
        if common == len(path) and common > 0:
            common -= 1  # the row after path itself is needed: recompute its last token
        drop = self.cache.get_seq_length() - (len(self.prompt) + common)
        if drop > 0:
            self.cache.crop(-drop)
        feed = path[common:] + extra
        if not feed:
            return self.root[None]
        out = self.lm.model(input_ids=torch.tensor([feed], device=self.lm.device),
                            use_cache=True, **cache_kwargs(self.lm.model, self.cache))
        self.cached = path[:common] + feed
        self.computed += len(feed)
        if not path:
            return torch.cat([self.root[None], out.logits[0]])
        return out.logits[0, len(path) - common - 1:]

    def _continuation(self, cursor: int) -> list[int]:
        """The tokenizer's reading of the text from ``cursor``, cut to one chunk."""
        rest = self.text[cursor:cursor + 8 * self.CHUNK]
        for cut in range(4):  # the slice may end inside a character
            try:
                head = rest[:len(rest) - cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            ids = self.lm.tokenizer(head, add_special_tokens=False)["input_ids"]
            if b"".join(self.table.bytes[i] for i in ids) == head.encode("utf-8"):
                return ids[: self.CHUNK]
            break
        ids, at = [], 0  # greedy longest match over bytes (cursor inside a character)
        while at < len(rest) and len(ids) < self.CHUNK:
            found = self.table.prefixes_of(rest, at)
            if not found:
                break
            ids.append(found[0])
            at += len(self.table.bytes[found[0]])
        return ids

    def canonical(self, path: list[int]) -> int | None:
        """The guessed next token after ``path``, if ``path`` follows the guess."""
        n = len(path)
        if n < len(self.guess) and self.guess[:n] == path:
            return self.guess[n]
        return None

    def logits(self, path: list[int], *, speculate: bool = True) -> torch.Tensor:
        n = len(path)
        if self.base <= n < self.base + len(self.rows) and self.guess[:n] == path:
            self.used = max(self.used, n - self.base)
            return self.rows[n - self.base]
        if not speculate:
            return self._forward(path, [])[-1]
        # guesses that keep failing early get shorter, guesses used to the end longer
        if self.used + 1 >= len(self.rows):
            self.chunk = min(self.CHUNK, 2 * self.chunk)
        elif self.used < len(self.rows) // 2:
            self.chunk = max(2, self.chunk // 2)
        self.used = 0
        cursor = sum(len(self.table.bytes[t]) for t in path)
        guess = self._continuation(cursor)[: self.chunk]
        self.rows, self.guess, self.base = self._forward(path, guess), path + guess, n
        return self.rows[0]


def _require_float64(lm: LM) -> None:
    dtype = next(lm.model.parameters()).dtype
    if dtype != torch.float64:
        raise CodecError(
            f"codecs need the model in float64 for exact decoding (got {dtype}): load it with "
            "load_lm(..., dtype=torch.float64) or call lm.model.double()"
        )
