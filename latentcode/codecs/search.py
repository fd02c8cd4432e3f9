"""The receiver's search: reading a codec's channel bits back from the text alone.

Decoding works from text, never from saved token ids. Tokenizers are not injective (``" the"``
then ``"m"`` and ``" them"`` give the same text), so a decoder cannot simply re-tokenize. The
search follows the tokenizer's reading first, keeps every other reading the sender could have
produced, ranks ambiguous ones with a one-step lookahead, and backtracks best-first
(limited discrepancy over the summed likelihood deficit) when a reading dies: a token no
message could produce, a frame header that fails its check, a CRC mismatch. The model calls are
made cheap by :class:`_Speculator`, which runs the model over a whole chunk of the tokenizer's
guess at once.
"""

from __future__ import annotations

import heapq
import itertools
import math

import torch

from ..generation import cache_kwargs, output_cache
from ..lm import LM
from ..transcripts import Transcript
from .framing import CRC_BITS, HEADER_BITS, FrameReader
from .state import DecodeResult, Option, RowState
from .tokens import TokenTable, token_table

# No token carries more than log2(vocab) < 18 bits, and every token has at least one byte, so a
# frame asking for more than this many bits per remaining byte is a wrong reading.
MAX_BITS_PER_BYTE = 18
LOOKAHEAD = 4  # ambiguous readings ranked by a one-step lookahead (the rest by probability)
TREE_MASKS = ("sdpa", "eager")  # attention kernels that take a custom 4D mask


def search_text(codec, lm: LM, transcript: Transcript, key: bytes, max_backtracks: int,
                max_forward_tokens: int | None) -> DecodeResult:
    """Best-first search over the readings of ``transcript.text`` (see the module docstring)
    for a frame that verifies under ``key``; ``codec`` supplies the step distributions and the
    per-step reading (``_probs``, ``decode_step``, ``in_flight_bits``)."""
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
        # after the frame's last bit the sender samples freely: nothing to look ahead at
        ahead = [i < LOOKAHEAD and cursor + len(table.bytes[token]) < len(text)
                 and not reader.read(bits + carried)[0]
                 for i, (token, carried, _) in enumerate(options)]
        scored, best, logits = [], 0.0, {}
        for i, (option, looks) in enumerate(zip(options, ahead)):
            token, _, extra = option
            prior = float(p[token])
            if not looks or prior <= best:
                scored.append((prior, option))
                continue
            row = model.stored(path + [token])  # the tokenizer's guess often covers it
            if row is None and token not in logits:  # one call for every reading that may win
                logits.update(model.next_logits(path, [
                    o[0] for o, a in zip(options[i:], ahead[i:]) if a and float(p[o[0]]) > best]))
            nxt = cursor + len(table.bytes[token])
            child = child_state(state, token, extra)
            p2 = codec._probs(logits[token] if row is None else row, child, table, stop_ids)
            follow = codec.decode_step(p2, child, table, text, nxt)
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
        elif (needed is not None and needed - len(bits) - codec.in_flight_bits(state)
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
            p = codec._probs(model.logits(path), state, table, stop_ids)
            options = codec.decode_step(p, state, table, text, cursor)
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
    is guessed from there. The lookahead's alternative tokens are scored in one call beside the
    guess (:meth:`next_logits`) and leave both the cache and the stored rows as they were.
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

    def stored(self, path: list[int]) -> torch.Tensor | None:
        """The logits row after ``path`` when the current guess covers it."""
        n = len(path)
        if self.base <= n < self.base + len(self.rows) and self.guess[:n] == path:
            self.used = max(self.used, n - self.base)
            return self.rows[n - self.base]
        return None

    def next_logits(self, path: list[int], tokens: list[int]) -> dict[int, torch.Tensor]:
        """Logits after ``path + [t]`` for each ``t``; those the guess does not cover come from
        one model call that leaves the cache as it was: the tokens sit side by side at the
        same position, each attending to the prompt, ``path`` and itself only (a tree
        attention mask, as in speculative decoding's token trees), and are cropped off after.
        Attention kernels without custom masks (flash attention) get one call per token."""
        out = {t: row for t in tokens if (row := self.stored(path + [t])) is not None}
        todo = list(dict.fromkeys(t for t in tokens if t not in out))
        if not todo:
            return out
        if getattr(self.lm.model.config, "_attn_implementation", "eager") not in TREE_MASKS:
            return out | {t: self._forward(path + [t], [])[-1] for t in todo}
        n = len(path)
        if n and self.cached[:n] != path:
            self._forward(path, [])  # bring the cache to prompt + path (rarely needed)
        past, start, k = self.cache.get_seq_length(), len(self.prompt) + n, len(todo)
        dtype = next(self.lm.model.parameters()).dtype
        mask = torch.full((1, 1, k, past + k), torch.finfo(dtype).min, dtype=dtype)
        mask[..., :start] = 0
        mask[0, 0, torch.arange(k), past + torch.arange(k)] = 0
        device = self.lm.device
        logits = self.lm.model(input_ids=torch.tensor([todo], device=device),
                               attention_mask=mask.to(device),
                               position_ids=torch.full((1, k), start, device=device),
                               use_cache=True, **cache_kwargs(self.lm.model, self.cache)).logits[0]
        self.cache.crop(-k)
        self.computed += k
        out.update(zip(todo, logits))
        return out

    def logits(self, path: list[int]) -> torch.Tensor:
        if (row := self.stored(path)) is not None:
            return row
        n = len(path)
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
