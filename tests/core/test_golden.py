"""Our NumPy forward pass against Hugging Face transformers' own tensors (../shared/golden)."""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.backend import cupy_status, resolve_backend
from attnstudio.core.transformer import encode
from attnstudio.engine import Engine
from attnstudio.session import Session
from tests.conftest import GOLDEN_DIR

NAMES = ["cat", "bank_account", "river_bank", "unicode", "paragraph"]
GPU_USABLE, GPU_REASON = cupy_status()


@pytest.mark.parametrize("name", NAMES)
def test_tokens_and_ids_match(name, golden_index, minilm):
    golden = np.load(GOLDEN_DIR / f"{name}.npz", allow_pickle=False)
    tokenized = minilm.tokenizer.encode(golden_index[name]["text"])
    assert tokenized.tokens == golden_index[name]["tokens"]
    np.testing.assert_array_equal(tokenized.ids, golden["input_ids"].reshape(-1))


@pytest.mark.parametrize("name", NAMES)
def test_attention_weights_match_transformers(name, golden_index, minilm):
    golden = np.load(GOLDEN_DIR / f"{name}.npz", allow_pickle=False)
    result = encode(minilm.parameters, golden["input_ids"].reshape(-1))
    attentions = result.attentions()
    assert attentions.shape == golden["attentions"].shape
    assert np.abs(attentions - golden["attentions"]).max() <= 1e-5
    hidden = np.stack(result.hidden_states)
    assert np.abs(hidden - golden["hidden_states"]).max() <= 1e-4


def test_engine_default_session_gives_the_models_own_weights(golden_index):
    result = Engine().compute(Session(text=golden_index["cat"]["text"], backend="numpy"))
    golden = np.load(GOLDEN_DIR / "cat.npz", allow_pickle=False)
    assert result.query_tokens == golden_index["cat"]["tokens"]
    assert np.abs(result.attentions() - golden["attentions"]).max() <= 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
@pytest.mark.parametrize("name", NAMES)
def test_cupy_forward_matches_transformers(name, golden_index):
    golden = np.load(GOLDEN_DIR / f"{name}.npz", allow_pickle=False)
    result = Engine().compute(Session(text=golden_index[name]["text"], backend="cupy"))
    assert result.backend.name == "cupy" and resolve_backend("cupy").name == "cupy"
    assert type(result.forward.traces[0].weights).__module__.startswith("cupy"), "data stays on the device"
    assert np.abs(result.attentions() - golden["attentions"]).max() <= 1e-5
