"""Shared fixtures: one tiny random model and one embedded model (in float32 and, for codecs,
in float64) per test session, and the tiny model saved as a local checkpoint folder (for code
that loads a model by path)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config):
    """Under pytest-xdist, each worker gets its share of the cores: two workers of two torch
    threads each on a 2-core machine would slow every test (oversubscription)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(scope="session")
def tiny():
    from latentcode.lm import tiny_lm

    return tiny_lm(seed=0)


@pytest.fixture(scope="session")
def embedded():
    from latentcode.lm import load_lm

    return load_lm()


@pytest.fixture(scope="session")
def embedded64():
    """The embedded model in float64, as codecs run it: a second copy, so that no test has to
    cast the shared one back and forth."""
    import torch

    from latentcode.lm import load_lm

    return load_lm(dtype=torch.float64)


@pytest.fixture
def tiny_folder(tmp_path):
    """``tiny_lm(seed=0)`` saved as a Hugging Face folder (safetensors + tokenizer)."""
    from latentcode.lm import tiny_lm

    lm = tiny_lm(seed=0)
    folder = tmp_path / "tiny-model"
    lm.model.save_pretrained(folder, safe_serialization=True)
    lm.tokenizer.save_pretrained(folder)
    return folder
