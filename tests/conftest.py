"""Shared fixtures: one tiny random model and one embedded model per test session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny():
    from latentcode.lm import tiny_lm

    return tiny_lm(seed=0)


@pytest.fixture(scope="session")
def embedded():
    from latentcode.lm import load_lm

    return load_lm()
