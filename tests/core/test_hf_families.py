"""Llama, Qwen2 and GPT-2 Hugging Face folders against transformers' own forward pass (tiny random checkpoints
and reference tensors made by benchmarks/make_tiny_decoders.py in the benchmark venv)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnstudio.core.families import family_of
from attnstudio.errors import ModelLoadError
from attnstudio.models.registry import load_model

DATA = Path(__file__).resolve().parent.parent / "data"
FAMILIES = {"llama": "llama", "qwen2": "llama", "gpt2": "gpt2"}  # checkpoint -> the family that runs it


@pytest.mark.parametrize("checkpoint", FAMILIES)
def test_a_tiny_checkpoint_matches_transformers(checkpoint):
    model = load_model(str(DATA / f"tiny-{checkpoint}"))
    reference = np.load(DATA / f"tiny-{checkpoint}.npz")
    family = family_of(model.parameters)
    assert family.name == FAMILIES[checkpoint] and family.causal and family.has_head
    ids = model.tokenizer.encode("The cat sat on the mat because it was tired. The dog did not.").ids
    np.testing.assert_array_equal(ids, reference["input_ids"])
    result = family.forward(model.parameters, ids)
    attentions = result.attentions()
    assert attentions.shape == reference["attentions"].shape
    np.testing.assert_allclose(attentions, reference["attentions"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.stack(result.hidden_states), reference["hidden_states"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(result.next_logits, reference["last_logits"], rtol=0, atol=1e-4)
    lens = family.logit_lens(model.parameters, result.hidden_states, len(ids) - 1)
    np.testing.assert_allclose(lens[-1], reference["last_logits"], rtol=0, atol=1e-4)


def test_qwen2_biases_are_used():
    """Dropping the q/k/v biases changes the attention: the reference could not be met without them."""
    model = load_model(str(DATA / "tiny-qwen2"))
    reference = np.load(DATA / "tiny-qwen2.npz")
    for layer in model.parameters.layers:
        assert layer.qkv_bias is not None and np.abs(layer.qkv_bias).max() > 0
        layer.qkv_bias = None
    attentions = family_of(model.parameters).forward(model.parameters, reference["input_ids"]).attentions()
    assert np.abs(attentions - reference["attentions"]).max() > 1e-3


@pytest.mark.parametrize("change, match", [
    ({"activation_function": "relu"}, "activation 'relu' is not supported"),
    ({"n_head": 5}, "not divisible"),
    ({"scale_attn_by_inverse_layer_idx": True}, "attention scaling"),
])
def test_unsupported_gpt2_settings_are_one_line(tmp_path, change, match):
    folder = shutil.copytree(DATA / "tiny-gpt2", tmp_path / "gpt2")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(folder))


def test_a_gpt2_text_longer_than_its_positions_is_truncated():
    model = load_model(str(DATA / "tiny-gpt2"))
    tokenized = model.tokenizer.encode("the cat " * 200)
    assert len(tokenized) == 64 and tokenized.truncated_from > 64
