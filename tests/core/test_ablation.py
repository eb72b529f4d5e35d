"""Switching heads off: zero output or uniform pattern, and what happens downstream."""
from __future__ import annotations

import dataclasses

import array_api_strict as xp
import numpy as np
import pytest

from attnstudio.core.ablation import Ablation, ablate_heads, uniform_pattern
from attnstudio.core.analysis import attention_change, cosine_similarity, sentence_embedding
from attnstudio.core.masks import causal_mask
from attnstudio.core.synthetic import SyntheticConfig, synthetic_forward
from attnstudio.core.transformer import encode, gelu, layer_norm
from attnstudio.errors import InvalidSetting
from tests.conftest import GOLDEN_DIR


@pytest.fixture(scope="module")
def cat_ids():
    return np.load(GOLDEN_DIR / "cat.npz")["input_ids"].reshape(-1)


def test_ablating_nothing_changes_nothing(minilm, cat_ids):
    plain = encode(minilm.parameters, cat_ids)
    for ablation in (None, Ablation(), Ablation((), "uniform")):
        same = encode(minilm.parameters, cat_ids, ablation=ablation)
        np.testing.assert_array_equal(same.attentions(), plain.attentions())
        np.testing.assert_array_equal(same.hidden_states[-1], plain.hidden_states[-1])


def test_zeroing_every_head_of_a_layer_leaves_only_bias_and_residual(minilm, cat_ids):
    layer_index, heads = 2, minilm.parameters.num_heads
    ablated = encode(minilm.parameters, cat_ids, ablation=Ablation(tuple((layer_index, h) for h in range(heads))))
    plain = encode(minilm.parameters, cat_ids)
    # the same as a model whose attention output projection sees zeros: its output is the bias alone
    layers = list(minilm.parameters.layers)
    layers[layer_index] = dataclasses.replace(layers[layer_index],
                                              attention_out_weight=np.zeros_like(layers[layer_index].attention_out_weight))
    skipped = encode(dataclasses.replace(minilm.parameters, layers=layers), cat_ids)
    for ours, reference in zip(ablated.hidden_states, skipped.hidden_states, strict=True):
        np.testing.assert_allclose(ours, reference, atol=1e-5)
    # and written out by hand: x -> LayerNorm(bias + x) -> feed-forward
    layer, eps = minilm.parameters.layers[layer_index], minilm.parameters.layer_norm_eps
    x = layer_norm(layer.attention_out_bias + plain.hidden_states[layer_index], layer.attention_norm, eps)
    hidden = gelu(x @ layer.intermediate_weight + layer.intermediate_bias)
    by_hand = layer_norm(hidden @ layer.output_weight + layer.output_bias + x, layer.output_norm, eps)
    np.testing.assert_allclose(ablated.hidden_states[layer_index + 1], by_hand, atol=1e-5)
    # earlier layers are untouched, later layers' attention changes
    change = attention_change(plain.attentions(), ablated.attentions())
    assert (change[:layer_index + 1] == 0).all() and (change[layer_index + 1:] > 1e-4).all()
    assert np.abs(ablated.traces[layer_index].context).max() == 0.0


def test_uniform_pattern_spreads_over_the_visible_keys(minilm, cat_ids):
    n = cat_ids.shape[0]
    mask = causal_mask(n, n)
    ablated = encode(minilm.parameters, cat_ids, mask=mask, ablation=Ablation(((0, 3), (0, 7)), "uniform"))
    weights = ablated.traces[0].weights
    expected = mask / mask.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(weights[3], expected, atol=1e-7)
    np.testing.assert_allclose(weights[7], expected, atol=1e-7)
    plain = encode(minilm.parameters, cat_ids, mask=mask)
    np.testing.assert_array_equal(weights[0], plain.traces[0].weights[0])
    np.testing.assert_allclose(ablated.traces[0].context[3], expected @ plain.traces[0].values[3], atol=1e-5)


def test_uniform_pattern_without_mask_and_fully_masked_rows():
    weights = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(uniform_pattern(weights), 0.25)
    mask = np.array([[True, True, False, False], [False] * 4, [True] * 4])
    pattern = uniform_pattern(weights, mask)
    np.testing.assert_allclose(pattern[0], [[0.5, 0.5, 0, 0], [0, 0, 0, 0], [0.25] * 4])


def test_ablation_changes_the_sentence_similarity(minilm):
    a = np.load(GOLDEN_DIR / "bank_account.npz")["input_ids"].reshape(-1)
    b = np.load(GOLDEN_DIR / "river_bank.npz")["input_ids"].reshape(-1)

    def similarity(ablation):
        embed = [sentence_embedding(encode(minilm.parameters, ids, ablation=ablation).hidden_states[-1])
                 for ids in (a, b)]
        return cosine_similarity(*embed)

    plain = similarity(None)
    layer_off = similarity(Ablation(tuple((0, h) for h in range(12))))
    assert abs(layer_off - plain) > 1e-3


def test_synthetic_model_ablation():
    table = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    ids = np.arange(6)
    config = SyntheticConfig(heads=4, d_k=4, d_model=16)
    plain = synthetic_forward(table, ids, config)
    ablated = synthetic_forward(table, ids, config, ablation=Ablation(((0, 1),)))
    context = ablated.traces[0].context
    assert np.abs(context[1]).max() == 0.0
    np.testing.assert_array_equal(context[0], plain.traces[0].context[0])
    with pytest.raises(InvalidSetting, match="L2·H1"):
        synthetic_forward(table, ids, config, ablation=Ablation(((1, 0),)))


def test_ablation_settings_are_checked_and_described():
    assert Ablation(((2, 1), (0, 3), (2, 1))).heads == ((0, 3), (2, 1))
    assert Ablation(((0, 3),), "uniform").describe() == "uniform L1·H4"
    assert Ablation().describe() == "none" and not Ablation()
    for bad in ((("a", 1),), ((0, -1),), ((0, 1, 2),), ((True, 0),)):
        with pytest.raises(InvalidSetting):
            Ablation(bad)
    with pytest.raises(InvalidSetting, match="mode"):
        Ablation((), "half")
    with pytest.raises(InvalidSetting, match="12 heads"):
        ablate_heads(np.ones((12, 2, 2)), np.ones((12, 2, 3)), (12,), "zero")


def test_ablation_beyond_the_model_is_refused(minilm, cat_ids):
    with pytest.raises(InvalidSetting, match="6 layers of 12 heads"):
        encode(minilm.parameters, cat_ids, ablation=Ablation(((6, 0),)))


def test_ablate_heads_uses_only_portable_array_operations():
    rng = np.random.default_rng(0)
    weights_np = rng.random((3, 4, 4)).astype(np.float32)
    values_np = rng.random((3, 4, 2)).astype(np.float32)
    mask_np = np.tril(np.ones((4, 4), dtype=bool))
    for mode in ("zero", "uniform"):
        weights, context = ablate_heads(xp.asarray(weights_np), xp.asarray(values_np), (1,), mode, xp.asarray(mask_np))
        expected_weights, expected_context = ablate_heads(weights_np, values_np, (1,), mode, mask_np)
        np.testing.assert_allclose(np.asarray(weights._array), expected_weights, atol=1e-7)
        np.testing.assert_allclose(np.asarray(context._array), expected_context, atol=1e-6)
