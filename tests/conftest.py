"""Shared test fixtures: project paths and the reference tensors in ../shared/golden."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from attnstudio.models.loader import load_pretrained_cached
from attnstudio.models.registry import load_model_cached

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # headless unless a display is asked for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = PROJECT_ROOT.parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_index() -> dict:
    return json.loads((GOLDEN_DIR / "index.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def minilm():
    return load_pretrained_cached("minilm")


SMOLLM2_GOLDEN_DIR = GOLDEN_DIR / "smollm2"


@pytest.fixture(scope="session")
def smollm2_index() -> dict:
    return json.loads((SMOLLM2_GOLDEN_DIR / "index.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def smollm2():
    """The built-in decoder, loaded once per test session (from the float32 cache after the first time)."""
    return load_model_cached("smollm2")
