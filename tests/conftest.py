"""Shared fixtures: the real offline model, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    """The cached safetensors folder of the embedded SmolLM2-135M-Instruct (built on first use)."""
    from helpers.model.embedded import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def tokenizer(embedded_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_path)


@pytest.fixture()
def fresh_model(embedded_path):
    """A new (model, tokenizer) from the cached folder: tests may modify it freely (~1 s)."""
    from helpers.model.load import load_model

    return load_model(profile="ci")


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K data not found at {GSM8K_DIR} (only in the project's shared folder)")
    return GSM8K_DIR
