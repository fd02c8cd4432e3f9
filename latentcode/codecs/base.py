"""The interface every reference codec shares, and the machinery they have in common.

A codec is defined by two per-step functions over the model's next-token distribution:

- ``encode_step(p, state) -> token``: choose a token that carries channel bits;
- ``decode_step(p, state, text, cursor) -> token``: find which token the sender chose, from the
  *text* at ``cursor`` (bytes), and push the bits it carried into ``state.reader``.

Everything else lives here: the batched encoding loop (one forward pass per step for the whole
batch, KV cache kept, via :func:`latentcode.generation.decode_loop`), the single-transcript
decoding loop, framing (length + CRC, see :mod:`framing`), and the token tables.

Decoding works from text, never from saved token ids. Tokenizers are not injective (``" the"``
then ``"m"`` and ``" them"`` give the same text), so a decoder cannot simply re-tokenize. Our
codecs make each step's choice identifiable from the text instead: the set of tokens a sender
could have picked carries bits only when no member is a byte-prefix of another, so at most one
of them matches the text at the cursor (see each codec for how it keeps that property). Exact
decoding also needs the receiver's distributions to equal the sender's bit for bit; float32
matrix products on CPU change slightly with the batch shape, so codecs run the LM in float64,
where the batched and single-row results agree.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ..generation import decode_loop
from ..lm import LM
from ..payload import KeyedStream, PayloadError, bit_accuracy
from ..prompts import Prompt
from ..transcripts import Transcript
from .framing import ChannelBits, FrameReader, frame_bits

LN2 = math.log(2)


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
    shaped batches, run the very same arithmetic.
    """
    z = np.where(allowed, logits.astype(np.float64) / temperature, -np.inf)
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]
        p[order[before >= top_p]] = 0.0
        p /= p.sum()
    return p


def entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def matching(table: TokenTable, candidates, text: bytes, cursor: int) -> list[int]:
    """Candidates whose bytes appear in ``text`` at ``cursor``."""
    return [t for t in candidates if table.bytes[t] and text.startswith(table.bytes[t], cursor)]


def prefix_free(table: TokenTable, tokens) -> bool:
    """True when no token's bytes are a prefix of another's (so the text picks one)."""
    ordered = sorted(table.bytes[t] for t in tokens)
    return all(not b.startswith(a) for a, b in zip(ordered, ordered[1:]))


def prefix_pools(table: TokenTable, tokens: Sequence[int]) -> list[list[int]]:
    """Group tokens into pools closed under the byte-prefix relation (Qi et al. 2024, SyncPool).

    Tokens in different pools are never prefixes of each other, so the text at the cursor
    identifies the pool; the token inside a pool is then picked with shared randomness.
    """
    order = sorted(tokens, key=lambda t: table.bytes[t])
    parent = {t: t for t in tokens}

    def find(t):
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for i, a in enumerate(order):
        ba = table.bytes[a]
        for b in order[i + 1:]:
            if not table.bytes[b].startswith(ba):
                break
            parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for t in tokens:  # keep the caller's order inside and across pools
        groups.setdefault(find(t), []).append(t)
    return list(groups.values())


# ----------------------------------------------------------------------------- state


@dataclass
class RowState:
    """Per-transcript state of a sender or a receiver."""

    key: bytes
    nonce: str
    channel: ChannelBits | None = None  # sender: the bits to embed
    receiving: bool = False  # receiver: bits come from the text, not from a payload
    sent: int = 0  # sender: channel bits fixed by the tokens so far
    frame_len: int = 0
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


def keyed_choice(p: np.ndarray, tokens: Sequence[int], u: float) -> int:
    """Inverse-CDF pick among ``tokens`` with weights ``p[tokens]`` at uniform ``u``."""
    w = np.asarray([p[t] for t in tokens], dtype=np.float64)
    cdf = np.cumsum(w)
    i = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return tokens[min(i, len(tokens) - 1)]


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

    def accuracy(self, true_payload: str) -> float:
        return bit_accuracy(true_payload, self.bits if self.bits is not None else self.recovered)


# ----------------------------------------------------------------------------- codec


class Codec(ABC):
    """A steganographic codec with a shared key and an exact decoder."""

    name = "codec"

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
        return keyed_choice(p, np.flatnonzero(p > 0).tolist(), state.rng("plain").uniform())

    # -- shared loops
    def _probs(self, logits: torch.Tensor, state: RowState, table: TokenTable,
               stop_ids: list[int]) -> np.ndarray:
        allowed = table.allowed(state.utf8).copy()
        if state.embedding or state.receiving:
            allowed[stop_ids] = False  # the frame is never cut short by a stop token
        else:
            allowed[stop_ids] = True
        return step_probs(logits.detach().cpu().numpy(), self.temperature, self.top_p, allowed)

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

        def choose(logits, rows, step):
            out = []
            for j, r in enumerate(rows):
                st = states[r]
                st.step = step
                p = self._probs(logits[j], st, table, stop_ids)
                if st.embedding:
                    st.entropy += entropy_bits(p)
                    embedded_steps[r] += 1
                    token = self.encode_step(p, st, table)
                else:
                    token = self.plain_step(p, st)
                if token not in stop_ids:
                    st.utf8 = int(table.utf8_next[st.utf8, token])
                out.append(token)
            return out

        gens = decode_loop(lm, lm.prompt_ids([p.prompt for p in prompts]), choose,
                           max_new_tokens=max_new_tokens, min_new_tokens=0,
                           batch_size=batch_size, progress=f"encoding ({self.name})" if progress else False)
        out = []
        for i, (prompt, gen, st) in enumerate(zip(prompts, gens, states)):
            raw = b"".join(table.bytes[t] for t in gen.tokens)
            n_payload = len(payloads[i])
            complete = st.sent >= st.frame_len
            out.append(Transcript(
                id=ids[i], prompt=prompt.prompt, text=raw.decode("utf-8", errors="ignore"),
                label=1, payload=payloads[i], source=self.name,
                meta={
                    "codec": self.name, "codec_params": self.params(), "model": lm.name,
                    "prompt_id": prompt.id, "category": prompt.category,
                    "n_tokens": len(gen.tokens), "finished": gen.finished,
                    "complete": complete,
                    "payload_bits": n_payload,
                    "frame_bits": st.frame_len,
                    "bits_embedded": min(st.sent, st.frame_len),
                    "embedding_tokens": embedded_steps[i],
                    "entropy_bits": round(st.entropy, 6),
                    "kl_nats": round(st.kl, 9),
                    "max_new_tokens": max_new_tokens,
                },
            ))
        return out

    @torch.inference_mode()
    def decode(self, lm: LM, transcript: Transcript, key: bytes, *,
               max_backtracks: int = 64) -> DecodeResult:
        """Recover the payload from the transcript's text, prompt and id (never its tokens).

        A depth-first search over the tokens that match the text: almost always a single
        path; where the text is ambiguous for this codec, wrong branches die at the next
        steps or at the CRC, and the search backs up (at most ``max_backtracks`` times).
        """
        _require_float64(lm)
        table, stop_ids = token_table(lm), lm.stop_ids
        text = transcript.text.encode("utf-8")
        reader = FrameReader(key, transcript.id)
        prompt = lm.prompt_ids([transcript.prompt])[0]

        def step(token: int, keep: int):
            """Logits after the first ``keep`` cached positions plus ``token`` (cache reused)."""
            drop = cache.get_seq_length() - keep
            if drop > 0:
                cache.crop(-drop)
            return lm.model(input_ids=torch.tensor([[token]], device=lm.device),
                            past_key_values=cache, use_cache=True)

        # each frame: (state, path tokens, channel bits, cursor, untried options)
        out = lm.model(input_ids=torch.tensor([prompt], device=lm.device), use_cache=True)
        cache = out.past_key_values
        root = RowState(key, transcript.id, receiving=True)
        stack: list = []
        best_partial, failure, backtracks = "", "the text matches no token", 0
        state, path, bits, cursor = root, [], [], 0
        while True:
            complete, payload, recovered = reader.read(bits)
            if len(recovered) > len(best_partial):
                best_partial = recovered
            options: list[Option] = []
            if complete and payload is not None:
                return DecodeResult("ok", payload, payload, "CRC verified", len(path))
            if complete:
                failure = "CRC mismatch"
            elif cursor >= len(text):
                failure = "text ended before the frame did"
            else:
                p = self._probs(out.logits[0, -1], state, table, stop_ids)
                try:
                    options = self.decode_step(p, state, table, text, cursor)
                except _NoMatch as err:
                    failure = f"byte {cursor}: {err}"
            if options:
                stack.append((state, path, bits, cursor, options))
            elif stack:
                backtracks += 1
            # take the next untried option, backing up past exhausted frames
            while stack and not stack[-1][4]:
                stack.pop()
            if not stack or backtracks > max_backtracks:
                break
            parent, ppath, pbits, pcursor, popts = stack[-1]
            token, carried, extra = popts.pop(0)
            state = RowState(key, transcript.id, receiving=True, step=parent.step + 1,
                             utf8=int(table.utf8_next[parent.utf8, token]), extra=extra)
            path, bits, cursor = ppath + [token], pbits + carried, pcursor + len(table.bytes[token])
            out = step(token, keep=len(prompt) + len(ppath))
        if best_partial and failure == "text ended before the frame did":
            return DecodeResult("partial", None, best_partial,
                                f"{failure} (truncated text?): {len(best_partial)} payload bits "
                                "recovered, unverified", len(path))
        return DecodeResult("failed", None, best_partial,
                            f"{failure}: wrong key, another codec's text, or edited text",
                            len(path))


class _NoMatch(Exception):
    """No token the sender could have chosen matches the text."""


def no_match(message: str) -> _NoMatch:
    return _NoMatch(message)


def _require_float64(lm: LM) -> None:
    dtype = next(lm.model.parameters()).dtype
    if dtype != torch.float64:
        raise CodecError(
            f"codecs need the model in float64 for exact decoding (got {dtype}): load it with "
            "load_lm(..., dtype=torch.float64) or call lm.model.double()"
        )


def check_payloads(payloads: Sequence[str]) -> None:
    for i, p in enumerate(payloads):
        if not isinstance(p, str) or not p or set(p) - {"0", "1"}:
            raise PayloadError(f"payload {i} must be a non-empty string of 0 and 1")
