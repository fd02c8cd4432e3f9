"""The LM receiver: a language model with its own LoRA adapter and a small head, trained to
name the secret from the cover prompt and the response alone.

This is the receiver of Mathew et al. 2024 ("Hidden in Plain Text", GBRL): a second policy,
fitted by supervised cross-entropy on the sender's recent responses (a replay buffer,
``updates_per_step`` minibatch updates after each sender step), whose log-probability of the
truth is the sender's decoding reward. By default it is the sender's own base model with a
second adapter (``receiver``): peft keeps both adapters on one copy of the weights, and only
the active one computes. Any other causal LM can read instead (``receiver.model``).

Its input is plain text, the cover prompt, a blank line and the response, tokenized by the
receiver's own tokenizer: the secret and the sender's instructions never enter it. (Plain
text, not a chat turn: SmolLM2's template adds a default system message, and the rendered
turn costs 2.3x the tokens of the prompt itself, every one of them read with a gradient.)

The head reads two means over the response tokens: of the last hidden states (what the text
says in context) and of the input embeddings (which words it chose, free of the prompt; on a
small or random model the contextual states are dominated by the prompt, and lexical codes,
such as synonyms or a list format, are the commonest learned ones). It gives either one logit per bit (a k-bit payload: the candidates' log-probabilities are sums of
per-bit log-sigmoids) or one logit per candidate (a categorical secret, such as a hiring
label). Head weights start at zero, so an untrained receiver is exactly at chance.

``pooling="attention"`` replaces the two means by one learned attention over the response's
tokens per output (each token's two states, layer-normed, concatenated), scored by what a
token is (a query per output) and where it stands (a learned bias per output and position in
the response, up to ``POSITIONS``): a bag of tokens cannot tell "1101" from "1011", and a code
in the order of tokens needs each bit to look at its own positions. Queries and biases start
at zero, so it starts as a uniform mean.
"""

from __future__ import annotations

import json
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..lm import LM
from .seeds import step_seed
from .sender import Rollouts

ADAPTER = "receiver"
SEPARATOR = "\n\n"  # between the cover prompt and the response the receiver reads
POSITIONS = 256  # attention pooling: response positions with a bias of their own (later: the last)


def head_kind(candidates: tuple[str, ...], requested: str = "auto") -> str:
    """``bits`` when the candidates are every k-bit string in order (a payload), else
    ``categorical``; ``requested`` overrides, and ``bits`` on other candidates is an error."""
    k = len(candidates[0])
    is_bits = (len(candidates) == 2 ** k
               and all(c == format(i, f"0{k}b") for i, c in enumerate(candidates)))
    if requested == "bits" and not is_bits:
        raise ValueError(f"receiver.head = \"bits\" needs candidates that are every bit string "
                         f"of one length, got {list(candidates)[:4]}...; use \"categorical\"")
    if requested != "auto":
        return requested
    return "bits" if is_bits else "categorical"


def response_slots(starts: list[int], lengths: list[int], width: int, device):
    """``pool`` (each response token ``1 / n``) and ``where`` (each token's position in its
    response) over ``[rows, width]``, for responses at ``starts`` of ``lengths`` tokens. An
    empty response pools the token just before its start (the last prompt token), so it still
    has a state to read."""
    pool = torch.zeros((len(starts), width), dtype=torch.float32, device=device)
    where = torch.zeros((len(starts), width), dtype=torch.long, device=device)
    for i, (start, n) in enumerate(zip(starts, lengths)):
        if n:
            pool[i, start:start + n] = 1.0 / n
            where[i, start:start + n] = torch.arange(n, device=device).clamp(max=POSITIONS - 1)
        else:
            pool[i, start - 1] = 1.0
    return pool, where


def bit_log_posteriors(logits: torch.Tensor) -> torch.Tensor:
    """``[rows, k]`` per-bit logits to ``[rows, 2**k]`` candidate log-probabilities, bits
    independent, the first bit most significant (the order of ``PayloadTask.candidates``)."""
    k = logits.shape[1]
    codes = torch.arange(2 ** k, device=logits.device)
    table = ((codes[:, None] >> torch.arange(k - 1, -1, -1, device=logits.device)) & 1).bool()
    one, zero = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    return torch.where(table[None], one[:, None, :], zero[:, None, :]).sum(-1)


class LMReceiver:
    """An LM that reads ``prompt + response`` and names the secret; see the module docstring.

    ``lm`` is the model it reads with: a peft model already holding the sender's adapter
    (``shared=True``: a second adapter is added beside it) or a plain causal LM of its own.
    """

    name = "lm"

    def __init__(self, lm: LM, candidates: tuple[str, ...], *, shared: bool, head: str = "auto",
                 rank: int = 8, alpha: int = 16, targets=(), lr: float = 1e-3,
                 updates_per_step: int = 4, batch_size: int = 32, history: int = 512,
                 pooling: str = "mean", seed: int = 0):
        from peft import LoraConfig, get_peft_model

        from .lora import lora_targets, wraps_conv1d

        if updates_per_step < 0 or batch_size < 1 or history < 1:
            raise ValueError("receiver.updates_per_step must be >= 0, receiver.batch_size and "
                             f"receiver.history >= 1; got {updates_per_step}, {batch_size}, "
                             f"{history}")
        if pooling not in ("mean", "attention"):
            raise ValueError(f"receiver.pooling must be 'mean' or 'attention', got {pooling!r}")
        self.candidates, self.head_kind = tuple(candidates), head_kind(tuple(candidates), head)
        self.pooling = pooling
        self.updates_per_step, self.batch_size, self.seed = updates_per_step, batch_size, seed
        base = lm.model.get_base_model() if shared else lm.model
        modules = lora_targets(base, targets)
        torch.manual_seed(seed)  # the adapter's initialisation
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=modules, lora_dropout=0.0,
                            bias="none", fan_in_fan_out=wraps_conv1d(base, modules))
        if shared:
            self.model, self.restore = lm.model, lm.model.active_adapter
            self.model.add_adapter(ADAPTER, config)
        else:
            self.model, self.restore = get_peft_model(lm.model, config, adapter_name=ADAPTER), None
        self.tokenizer = lm.tokenizer
        out = len(self.candidates[0]) if self.head_kind == "bits" else len(self.candidates)
        hidden = self.model.get_base_model().config.get_text_config().hidden_size
        self.head = torch.nn.Linear(2 * hidden, out, dtype=torch.float32, device=lm.device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.query = self.position = None
        if pooling == "attention":  # per output a query and a bias per position, all zero
            self.query = torch.nn.Linear(2 * hidden, out, bias=False, dtype=torch.float32,
                                         device=lm.device)
            torch.nn.init.zeros_(self.query.weight)
            self.position = torch.nn.Parameter(
                torch.zeros(POSITIONS, out, dtype=torch.float32, device=lm.device))
        with self.active():
            params = [p for n, p in self.model.named_parameters() if f".{ADAPTER}." in n]
        self.parameters = params + list(self.head.parameters()) + (
            [self.query.weight, self.position] if self.query is not None else [])
        self.optimizer = torch.optim.AdamW(self.parameters, lr=lr, weight_decay=0.0)
        # replay buffer: (prompt, response text, target distribution over candidates)
        self.buffer: deque[tuple[str, str, list[float]]] = deque(maxlen=history)
        self.steps_seen = 0

    @contextmanager
    def active(self):
        """The receiver's adapter on (and trainable) for the duration; the sender's after."""
        self.model.set_adapter(ADAPTER)
        try:
            yield
        finally:
            if self.restore is not None:
                self.model.set_adapter(self.restore)

    def _tokens(self, prompts: list[str], texts: list[str]) -> list[tuple[list[int], list[int]]]:
        """Per row, the ids of the cover prompt and of the response text, by the receiver's
        own tokenizer."""
        tok = self.tokenizer
        return [(tok(p + SEPARATOR, add_special_tokens=False)["input_ids"],
                 tok(t, add_special_tokens=False)["input_ids"])
                for p, t in zip(prompts, texts, strict=True)]

    def input_ids(self, prompts: list[str], texts: list[str]) -> list[list[int]]:
        """Everything the receiver reads, row by row (never the secret or the sender's
        instructions)."""
        return [p + r for p, r in self._tokens(prompts, texts)]

    def _token_states(self, rows: list[tuple[list[int], list[int]]]):
        """The states the head reads, ``[rows, width, hidden]`` twice (last layer, input
        embeddings), with ``pool`` (``[rows, width]``, each response token ``1 / n``) and
        ``where`` (each token's position in its response).

        Each distinct prompt is read once and its KV cache copied out to the rows that share
        it (``latentcode/prefix.py``): a group's samples share their prompt, which is most of
        what a 1-bit receiver reads. The last prompt token is read with the response, so an
        empty response still has a state to read (that token's)."""
        device = self.head.weight.device
        if any(len(p) < 2 for p, _ in rows):  # no prefix to share: one plain forward
            return self._plain_states(rows)
        from ..generation import cache_kwargs, left_pad, prefill

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        reader = LM(model=self.model, tokenizer=self.tokenizer, name="lm-receiver")
        cache, _, mask = prefill(reader, [p[:-1] for p, _ in rows], pad)
        cont, cont_mask = left_pad([p[-1:] + r for p, r in rows], pad, device)
        width = cont.shape[1]
        positions = (mask.sum(-1)[:, None] + cont_mask.cumsum(-1) - 1).clamp(min=0)
        body = self.model.get_base_model().base_model  # the transformer without its LM head
        states = body(input_ids=cont, attention_mask=torch.cat([mask, cont_mask], dim=1),
                      position_ids=positions, use_cache=True, output_hidden_states=True,
                      **cache_kwargs(body, cache)).hidden_states
        # left-padded: the response is the last len(r) slots
        pool, where = response_slots([width - len(r) for _, r in rows], [len(r) for _, r in rows],
                                     width, device)
        return states[-1], states[0], pool, where

    def _plain_states(self, rows: list[tuple[list[int], list[int]]]):
        """:meth:`_token_states` by one right-padded forward over whole rows."""
        width = max(len(p) + len(r) for p, r in rows)
        device = self.head.weight.device
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        attention = torch.zeros_like(ids)
        for i, (p, r) in enumerate(rows):
            ids[i, :len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
            attention[i, :len(p) + len(r)] = 1
        pool, where = response_slots([len(p) for p, _ in rows], [len(r) for _, r in rows],
                                     width, device)
        body = self.model.get_base_model().base_model  # the transformer without its LM head
        states = body(input_ids=ids, attention_mask=attention,
                      output_hidden_states=True).hidden_states
        return states[-1], states[0], pool, where

    def _forward(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        """``[rows, candidates]`` log-posteriors (with grad when grad mode is on); call it
        inside :meth:`active`."""
        last, embedded, pool, where = self._token_states(self._tokens(prompts, texts))
        if self.query is None:
            parts = [(x.float() * pool[..., None]).sum(1) for x in (last, embedded)]
            # each part on one scale, so neither drowns the other's signal
            pooled = torch.cat([torch.nn.functional.layer_norm(x, x.shape[-1:]) for x in parts], -1)
            logits = self.head(pooled)
        else:
            tokens = torch.cat([torch.nn.functional.layer_norm(x, x.shape[-1:])
                                for x in (last.float(), embedded.float())], -1)
            scores = self.query(tokens) + self.position[where]  # what, and where
            scores = scores.masked_fill((pool == 0)[..., None], float("-inf"))
            weights = torch.softmax(scores, dim=1)  # [rows, width, outputs], over tokens
            pooled = torch.einsum("rwo,rwd->rod", weights, tokens)
            logits = (pooled * self.head.weight[None]).sum(-1) + self.head.bias
        if self.head_kind == "bits":
            return bit_log_posteriors(logits)
        return torch.log_softmax(logits, -1)

    def _check_candidates(self, rollouts: Rollouts) -> None:
        if tuple(rollouts.episodes[0].candidates) != self.candidates:
            raise ValueError(f"the LM receiver was built for candidates {self.candidates[:4]}..., "
                             f"these episodes have {rollouts.episodes[0].candidates[:4]}...")

    @torch.no_grad()
    def log_posteriors(self, rollouts: Rollouts, batch_size: int = 32) -> np.ndarray:
        self._check_candidates(rollouts)
        self.model.eval()
        prompts = [rollouts.episode_of(r).prompt for r in range(len(rollouts))]
        with self.active():
            chunks = [self._forward(prompts[s:s + batch_size], rollouts.texts[s:s + batch_size])
                      for s in range(0, len(rollouts), batch_size)]
        return torch.cat(chunks).double().cpu().numpy()

    def observe(self, rollouts: Rollouts, log_posteriors: np.ndarray | None = None) -> dict:
        """After the batch was scored (its reward came from this receiver before it learns
        from it): learn from the true secrets. (Its reading of the batch before learning is
        the step's ``accuracy`` already.)"""
        row = self.learn(rollouts)
        row.pop("fresh_accuracy", None)
        return row

    def learn(self, rollouts: Rollouts, targets: np.ndarray | None = None) -> dict:
        """Add the batch to the replay buffer (with ``targets``, distributions over the
        candidates, as soft labels; else the true secrets) and take ``updates_per_step``
        steps of cross-entropy: the first on the new batch itself (as GBRL trains on the
        sender's latest outputs), the others on minibatches drawn from the buffer.

        The first step's forward pass is also the receiver's reading of the new batch before
        it learned from it: its accuracy comes back as ``fresh_accuracy``, at no extra cost."""
        self._check_candidates(rollouts)
        truth = rollouts.truth()
        for row, text in enumerate(rollouts.texts):
            if targets is None:
                target = [0.0] * len(self.candidates)
                target[int(truth[row])] = 1.0
            else:
                target = [float(x) for x in targets[row]]
            self.buffer.append((rollouts.episode_of(row).prompt, text, target))
        out: dict = {}
        if self.updates_per_step:
            newest = range(len(self.buffer) - len(rollouts), len(self.buffer))
            loss, fresh = self.update(newest)
            losses = [loss] + [self.update(self._draw(u))[0]
                               for u in range(1, self.updates_per_step)]
            out = {"receiver_loss": float(np.mean(losses)),
                   "fresh_accuracy": float((fresh.argmax(1) == truth).mean())}
        self.steps_seen += 1
        return out

    def _draw(self, index: int) -> np.ndarray:
        """A minibatch of buffer rows, drawn from a seed of (seed, steps seen, update index):
        a resumed run draws the same minibatches."""
        rng = np.random.default_rng(step_seed(self.seed, self.steps_seen, f"receiver-{index}"))
        return rng.choice(len(self.buffer), size=min(self.batch_size, len(self.buffer)),
                          replace=False)

    def update(self, rows) -> tuple[float, np.ndarray]:
        """One step of cross-entropy on these buffer rows: the loss, and the log-posteriors
        the rows had before the step."""
        batch = [self.buffer[int(r)] for r in rows]
        target = torch.tensor([b[2] for b in batch], dtype=torch.float32,
                              device=self.head.weight.device)
        self.model.train()
        with self.active():  # backward too: the sender's adapter is frozen meanwhile
            log_post = self._forward([b[0] for b in batch], [b[1] for b in batch])
            loss = -(target * log_post).sum(-1).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
            self.optimizer.step()
        self.model.eval()
        return float(loss.detach()), log_post.detach().double().cpu().numpy()

    # ----------------------------------------------------------------- saving and loading

    def weights(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        adapter = get_peft_model_state_dict(self.model, adapter_name=ADAPTER)
        out = {f"adapter.{k}": v for k, v in adapter.items()}
        out.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        if self.query is not None:
            out.update({"query.weight": self.query.weight, "position": self.position})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        adapter = {k[len("adapter."):]: v for k, v in tensors.items() if k.startswith("adapter.")}
        set_peft_model_state_dict(self.model, adapter, adapter_name=ADAPTER)
        self.head.load_state_dict({k[len("head."):]: v for k, v in tensors.items()
                                   if k.startswith("head.")})
        if (self.query is None) != ("query.weight" not in tensors):
            raise ValueError("the saved receiver and this one pool differently (receiver.pooling)")
        if self.query is not None:
            with torch.no_grad():
                self.query.weight.copy_(tensors["query.weight"])
                self.position.copy_(tensors["position"])

    def save(self, folder: Path, *, optimizer: bool = True) -> None:
        """Weights (and optimizer moments) as safetensors in ``folder``; ``state()`` holds the
        rest. The trainer calls this inside its atomic checkpoint folder."""
        from safetensors.torch import save_file

        from .checkpoint import optimizer_tensors

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.weights(), str(folder / "receiver.safetensors"))
        meta = {"head": self.head_kind, "candidates": list(self.candidates),
                "pooling": self.pooling}
        if optimizer:
            tensors, meta["optimizer"] = optimizer_tensors(self.optimizer)
            if tensors:
                save_file(tensors, str(folder / "receiver-optimizer.safetensors"))
        (folder / "receiver.json").write_text(json.dumps(meta, allow_nan=False) + "\n")

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        from .checkpoint import load_optimizer

        meta = json.loads((folder / "receiver.json").read_text())
        if tuple(meta["candidates"]) != self.candidates or meta["head"] != self.head_kind:
            raise ValueError(f"{folder}: a receiver for {meta['head']} head over "
                             f"{meta['candidates'][:4]}..., not this run's")
        self.load_weights(load_file(str(folder / "receiver.safetensors")))
        if "optimizer" in meta:
            moments = folder / "receiver-optimizer.safetensors"
            load_optimizer(self.optimizer, load_file(str(moments)) if moments.is_file() else {},
                           meta["optimizer"])

    def state(self) -> dict:
        return {"buffer": [list(b) for b in self.buffer], "steps_seen": self.steps_seen}

    def load_state(self, state: dict) -> None:
        self.buffer.clear()
        self.buffer.extend((p, t, list(target)) for p, t, target in state["buffer"])
        self.steps_seen = state["steps_seen"]
