"""Activation probes: linear read-outs of a reader LM's hidden states.

The reader runs over the rendered prompt and the response; the hidden states of the chosen
layers are mean-pooled over the response tokens and concatenated. Two uses:

- :class:`ProbeDetector` (``probe``): logistic regression, stego versus clean (supervised);
  ``policy-probe`` is the same read-out of a trained sender's own activations (white-box);
- :func:`payload_probe`: one probe per payload bit, cross-validated; accuracy above 1/2 on
  held-out transcripts means the activations carry the payload, a channel the reader can read.
  The binomial test counts every (transcript, bit) prediction; bits of one transcript are
  predicted from the same features, so treat the p-value as a screen, not a proof.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import binomtest

from latentcode.generation import length_sorted_batches
from latentcode.lm import LM, evaluating
from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, labels_of, register
from .cache import ForwardCache

_cache = ForwardCache(20_000)  # pooled rows: a probe refitted per source reads each text once


def _resolve_layers(lm: LM, layers: Sequence[int]) -> list[int]:
    n = lm.model.config.num_hidden_layers
    out = []
    for layer in layers:
        index = layer if layer >= 0 else n + 1 + layer  # hidden_states has n + 1 entries
        if not 0 <= index <= n:
            raise DetectorError(f"layer {layer} out of range for a model with {n} layers")
        out.append(index)
    return out


@torch.inference_mode()
def pooled_hidden_states(lm: LM, transcripts: Sequence[Transcript], layers: Sequence[int], *,
                         max_tokens: int = 512, batch_size: int = 8) -> np.ndarray:
    """Mean over response tokens of the hidden states at ``layers`` (negative = from the top;
    0 = embeddings), concatenated: one row per transcript. Responses are cut to ``max_tokens``."""
    index = _resolve_layers(lm, layers)
    out = np.zeros((len(transcripts), lm.model.config.hidden_size * len(index)))
    model_key = ForwardCache.model_key(lm)
    keys = [(model_key, tuple(index), max_tokens, t.prompt, t.text) for t in transcripts]
    todo = []
    for i, key in enumerate(keys):
        cached = _cache.get(key)
        if cached is None:
            todo.append(i)
        else:
            out[i] = cached
    if not todo:
        return out
    prompts = lm.prompt_ids([transcripts[i].prompt for i in todo])
    rows, n_text = [], []
    for i, prompt in zip(todo, prompts):
        ids = lm.tokenizer(transcripts[i].text, add_special_tokens=False)["input_ids"][:max_tokens]
        if not ids:
            raise DetectorError(f"transcript {transcripts[i].id!r}: the text has no tokens")
        rows.append(prompt + ids)
        n_text.append(len(ids))
    for batch, inputs in length_sorted_batches(lm, rows, batch_size):
        with evaluating(lm.model):
            hidden = lm.model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states
        for r, j in enumerate(batch):
            pooled = [hidden[k][r, -n_text[j]:].double().mean(0) for k in index]
            out[todo[j]] = torch.cat(pooled).cpu().numpy()
            _cache.put(keys[todo[j]], out[todo[j]].copy())
    return out


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


class ProbeDetector(Detector):
    name = "probe"
    needs_lm = True
    needs_labels = True

    def __init__(self, lm: LM | None = None, layers: Sequence[int] = (-1,), C: float = 0.1,
                 max_tokens: int = 512, batch_size: int = 8, seed: int = 0):
        self.lm, self.layers, self.C = lm, [int(x) for x in layers], C
        self.max_tokens, self.batch_size, self.seed = max_tokens, batch_size, seed

    def features(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        return pooled_hidden_states(self.lm, check_transcripts(transcripts), self.layers,
                                    max_tokens=self.max_tokens, batch_size=self.batch_size)

    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        from sklearn.linear_model import LogisticRegression

        transcripts = check_transcripts(transcripts)
        y = labels_of(transcripts, labels)
        x = self.features(transcripts)
        self.mean_, self.scale_ = _standardize(x)
        model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        model.fit((x - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        return self

    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        x = (self.features(transcripts) - self.mean_) / self.scale_
        return x @ self.coef_ + self.intercept_


@register("probe", needs_lm=True)
def probe(lm=None, layers: Sequence[int] = (-1,), C: float = 0.1, max_tokens: int = 512,
          batch_size: int = 8, seed: int = 0):
    """Logistic-regression probe on mean-pooled hidden states, stego versus clean."""
    return ProbeDetector(lm, layers, C, max_tokens, batch_size, seed)


@register("policy-probe", needs_lm=True)
def policy_probe(lm=None, layers: Sequence[int] = (-1,), C: float = 0.1, max_tokens: int = 512,
                 batch_size: int = 8, seed: int = 0):
    """The probe on a trained sender's own hidden states (its adapter on: white-box), as
    opposed to a frozen reader's; ``latentcode detect --policy RUN`` gives it the sender."""
    return ProbeDetector(lm, layers, C, max_tokens, batch_size, seed)


policy_probe.reads_policy = True  # a caller hands it the policy, not the frozen reader


def payload_probe(lm: LM, transcripts: Sequence[Transcript], *, n_bits: int = 8,
                  layers: Sequence[int] = (-1,), folds: int = 5, C: float = 0.1,
                  seed: int = 0, max_tokens: int = 512, batch_size: int = 8) -> dict:
    """Can a linear probe read the first ``n_bits`` payload bits from the reader's activations?

    Cross-validated accuracy per bit over transcripts that carry a payload, and a one-sided
    binomial test of all held-out predictions against chance (1/2).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    carriers = [t for t in check_transcripts(transcripts) if t.payload and len(t.payload) >= n_bits]
    if len(carriers) < 2 * folds:
        raise DetectorError(f"payload probe needs at least {2 * folds} transcripts with "
                            f">= {n_bits}-bit payloads, got {len(carriers)}")
    x = pooled_hidden_states(lm, carriers, layers, max_tokens=max_tokens, batch_size=batch_size)
    bits = np.array([[int(b) for b in t.payload[:n_bits]] for t in carriers])
    per_bit, correct, total = [], 0, 0
    for i in range(n_bits):
        y = bits[:, i]
        if len(np.unique(y)) < 2 or np.bincount(y).min() < folds:
            per_bit.append(None)
            continue
        hits = 0
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            mean, scale = _standardize(x[train])
            model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
            model.fit((x[train] - mean) / scale, y[train])
            hits += int((model.predict((x[test] - mean) / scale) == y[test]).sum())
        per_bit.append(hits / len(y))
        correct, total = correct + hits, total + len(y)
    if total == 0:
        raise DetectorError("no payload bit varies enough across transcripts to probe")
    return {"bit_accuracy": per_bit, "accuracy": correct / total, "predictions": total,
            "p_value": float(binomtest(correct, total, 0.5, alternative="greater").pvalue),
            "transcripts": len(carriers)}
