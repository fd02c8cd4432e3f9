"""The sender: a causal LM with a LoRA adapter; with the adapter switched off it is the frozen
reference the KL penalty measures against (one copy of the weights serves both).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..generation import AncestralSampler, decode_loop
from ..lm import LM
from ..prefix import continuation_logits
from .tasks import Episode


@contextmanager
def _quiet_peft():
    """peft asks transformers a deprecated question on every wrap; the warning tells a user
    nothing they can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        yield


@dataclass
class Rollouts:
    """``group_size`` responses per episode, row ``r`` answering ``episodes[r // group_size]``."""

    episodes: list[Episode]
    group_size: int
    prompt_ids: list[list[int]]  # what the sender was conditioned on (system + prompt)
    response_ids: list[list[int]]
    texts: list[str]
    finished: list[bool]

    def episode_of(self, row: int) -> Episode:
        return self.episodes[row // self.group_size]

    def truth(self) -> np.ndarray:
        """Index of each row's secret among its candidates (what a receiver should name)."""
        return np.array([self.episode_of(r).candidates.index(self.episode_of(r).secret)
                         for r in range(len(self))])

    def __len__(self) -> int:
        return len(self.texts)


class Sender:
    def __init__(self, lm: LM, *, rank: int = 8, alpha: int = 16, targets: Sequence[str] = ()):
        """``targets``: the layers the LoRA adapter wraps; empty: the architecture's default
        (``lora.py``)."""
        from peft import LoraConfig, get_peft_model

        from .lora import lora_targets, wraps_conv1d

        modules = lora_targets(lm.model, targets)
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=modules, lora_dropout=0.0,
                            bias="none", task_type="CAUSAL_LM",
                            fan_in_fan_out=wraps_conv1d(lm.model, modules))
        with _quiet_peft():
            self._adopt(get_peft_model(lm.model, config), lm)

    def _adopt(self, model, lm: LM) -> None:
        """Hold ``model`` (``lm``'s weights wrapped by peft) and an LM view of it."""
        self.model = model
        self.lm = LM(model=model, tokenizer=lm.tokenizer, name=f"{lm.name}+lora", info=dict(lm.info))
        self.base_name = lm.name

    @classmethod
    def load(cls, lm: LM, adapter: str | Path) -> Sender:
        """A trained sender: ``lm`` wrapped with the LoRA weights of a run's ``adapter/`` folder
        (safetensors, read by peft; nothing is unpickled)."""
        from peft import PeftModel

        if not (Path(adapter) / "adapter_model.safetensors").is_file():
            raise FileNotFoundError(f"{adapter}: no adapter_model.safetensors (a finished "
                                    "`latentcode train` run writes it into <run>/adapter)")
        sender = cls.__new__(cls)
        with _quiet_peft():
            sender._adopt(PeftModel.from_pretrained(lm.model, str(adapter), is_trainable=False), lm)
        return sender

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def reference(self):
        """Context in which the model is the frozen reference (adapter off)."""
        return self.model.disable_adapter()

    def generate(self, episodes: Sequence[Episode], group_size: int, *, max_new_tokens: int,
                 temperature: float, seed: int, batch_size: int = 64,
                 first_row: int = 0) -> Rollouts:
        """Sample ``group_size`` responses per episode; row streams are seeded (resumable).
        Row ``r`` draws from stream ``first_row + r``: a process sampling its share of a step
        passes where the share starts, so each row gets the stream one process would give it."""
        prompt_ids = [ids for ids in episode_prompt_ids(self.lm, episodes)
                      for _ in range(group_size)]
        sampler = AncestralSampler(seed, temperature)
        self.model.eval()
        gens = decode_loop(self.lm, prompt_ids,
                           lambda logits, rows, step: sampler(
                               logits, [first_row + r for r in rows], step),
                           max_new_tokens=max_new_tokens, min_new_tokens=1,
                           batch_size=batch_size)
        texts = [self.lm.tokenizer.decode(g.tokens, skip_special_tokens=True) for g in gens]
        return Rollouts(list(episodes), group_size, prompt_ids, [g.tokens for g in gens], texts,
                        [g.finished for g in gens])


def episode_prompt_ids(lm: LM, episodes: Sequence[Episode]) -> list[list[int]]:
    """What the sender is conditioned on for each episode: its prompt under its instructions
    (and public tag), rendered and tokenized."""
    return [lm.prompt_ids([ep.prompt], ep.sender_system)[0] for ep in episodes]


def response_logprobs(lm: LM, prompt_ids: Sequence[list[int]],
                      response_ids: Sequence[list[int]], *, reference: bool = False,
                      sender: Sender | None = None, entropy: bool = False):
    """Log-probabilities of each response token given its prompt: ``(logp, mask)`` of shape
    ``[rows, max response length]``, right-aligned on the response and zero where masked;
    with ``entropy=True`` also the mean entropy (nats) of the policy at those positions.

    Rows that share a prompt (a group of samples) read it once
    (:func:`latentcode.prefix.continuation_logits`). Gradients flow unless the caller runs
    under ``torch.no_grad``; ``reference=True`` switches the sender's adapter off.
    """
    context = sender.reference() if reference and sender is not None else nullcontext()
    with context:
        logits, keep = continuation_logits(lm, prompt_ids, response_ids)
    width = keep.shape[1]
    targets = torch.zeros(keep.shape, dtype=torch.long, device=logits.device)
    for i, r in enumerate(response_ids):
        if len(r):
            targets[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
    log_probs = torch.log_softmax(logits.float(), -1)
    logp = log_probs.gather(-1, targets[..., None])[..., 0] * keep
    if not entropy:
        return logp, keep
    with torch.no_grad():
        ent = -(log_probs.exp() * log_probs).sum(-1)
        mean_entropy = float((ent * keep).sum() / keep.sum().clamp(min=1))
    return logp, keep, mean_entropy
