"""The model-family registry and the Llama forward pass's properties (causal, RoPE, GQA, tied head)."""
from __future__ import annotations

import dataclasses

import array_api_strict as xps
import numpy as np
import pytest

from attnstudio.core.families import FAMILIES, family_named, family_of
from attnstudio.core.families.llama import (
    LlamaLayer,
    LlamaParameters,
    apply_rope,
    forward,
    logit_lens,
    repeat_kv,
    rms_norm,
    rope_tables,
    silu,
    unembed,
)
from attnstudio.core.next_token import top_next_tokens
from attnstudio.core.transformer import encode
from attnstudio.errors import InvalidSetting


def tiny_llama(seed: int = 0, *, heads: int = 4, kv_heads: int = 2, head_dim: int = 8, d_model: int = 32,
               d_ff: int = 48, layers: int = 2, vocab: int = 40) -> LlamaParameters:
    rng = np.random.default_rng(seed)

    def random(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return LlamaParameters(
        token_embeddings=random(vocab, d_model, scale=1.0),
        layers=[LlamaLayer(attention_norm=1 + random(d_model, scale=0.1),
                           qkv_weight=random(d_model, (heads + 2 * kv_heads) * head_dim),
                           attention_out_weight=random(heads * head_dim, d_model),
                           mlp_norm=1 + random(d_model, scale=0.1), gate_up_weight=random(d_model, 2 * d_ff),
                           down_weight=random(d_ff, d_model)) for _ in range(layers)],
        final_norm=1 + random(d_model, scale=0.1), unembedding=None, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, rope_base=10000.0, rms_norm_eps=1e-5, context_length=64)


def test_registry_names_each_family_once_and_finds_it_from_its_parameters(minilm):
    assert set(FAMILIES) >= {"bert", "llama"}
    assert family_of(minilm.parameters).name == "bert" and not family_of(minilm.parameters).causal
    assert family_of(tiny_llama()).name == "llama" and family_of(tiny_llama()).causal
    with pytest.raises(InvalidSetting, match="bert, llama"):
        family_named("t5-xxl")
    with pytest.raises(InvalidSetting):
        family_of(object())


def test_bert_family_is_todays_encoder_exactly(minilm):
    ids = minilm.tokenizer.encode("The bank of the river.").ids
    ours, reference = family_named("bert").forward(minilm.parameters, ids), encode(minilm.parameters, ids)
    np.testing.assert_array_equal(ours.attentions(), reference.attentions())
    assert ours.next_logits is None


def test_decoder_is_causal_and_a_prefix_gives_the_same_rows():
    parameters = tiny_llama()
    ids = np.array([3, 17, 5, 9, 30, 2, 11])
    full = forward(parameters, ids)
    attentions = full.attentions()  # (layers, heads, n, n)
    assert np.all(np.triu(attentions, k=1) == 0)
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-6)
    prefix = forward(parameters, ids[:4]).attentions()
    np.testing.assert_allclose(prefix, attentions[..., :4, :4], atol=1e-6)
    # The last token's prediction depends on every earlier token: changing the first changes it.
    changed = forward(parameters, np.concatenate([[4], ids[1:]]))
    assert np.abs(changed.next_logits - full.next_logits).max() > 1e-4


def test_query_heads_in_one_group_share_keys_and_values():
    parameters = tiny_llama(heads=6, kv_heads=2)
    trace = forward(parameters, np.array([1, 2, 3, 4, 5])).traces[0]
    for head in range(6):
        partner = parameters.kv_head_of(head) * 3
        np.testing.assert_array_equal(trace.keys[head], trace.keys[partner])
        np.testing.assert_array_equal(trace.values[head], trace.values[partner])
    assert np.abs(trace.keys[0] - trace.keys[3]).max() > 1e-3  # different groups, different keys
    assert [parameters.kv_head_of(h) for h in range(6)] == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(repeat_kv(np.arange(4).reshape(2, 2, 1), 4)[:, 0, 0], [0, 0, 2, 2])


def test_rope_scores_depend_only_on_the_distance_between_positions():
    rng = np.random.default_rng(1)
    n, d = 12, 8
    q, k = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    cos, sin = rope_tables(n, d, 10000.0, np, np.float32)
    rotated_q = apply_rope(np.broadcast_to(q, (1, n, d)), cos, sin)[0]  # the same vector at every position
    rotated_k = apply_rope(np.broadcast_to(k, (1, n, d)), cos, sin)[0]
    scores = rotated_q @ rotated_k.T  # (n, n)
    for offset in range(-3, 4):
        diagonal = np.diagonal(scores, offset)
        np.testing.assert_allclose(diagonal, diagonal[0], atol=1e-4)
    np.testing.assert_allclose(rotated_q[0], q)  # position 0 is not rotated
    # Rotate-half pairs dimension i with i + d/2 (not adjacent dimensions): a rotation keeps those pairs' norms.
    half = d // 2
    pair_norms = rotated_q[:, :half] ** 2 + rotated_q[:, half:] ** 2
    np.testing.assert_allclose(pair_norms, np.broadcast_to(q[:half] ** 2 + q[half:] ** 2, (n, half)), rtol=1e-5)


def test_rope_frequency_factors_divide_the_frequencies():
    cos, sin = rope_tables(6, 8, 10000.0, np, np.float32)
    scaled_cos, scaled_sin = rope_tables(6, 8, 10000.0, np, np.float32, np.array([1, 1, 2, 4], dtype=np.float32))
    np.testing.assert_array_equal(scaled_cos[:, :2], cos[:, :2])
    angles = np.arange(6)[:, None] * (1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8))[None, :] / np.array([1, 1, 2, 4])
    np.testing.assert_allclose(scaled_cos, np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(scaled_sin, np.sin(angles), atol=1e-6)


def test_user_masks_combine_with_the_causal_mask():
    parameters = tiny_llama()
    ids = np.array([3, 17, 5, 9, 30])
    mask = np.ones((5, 5), dtype=bool)
    mask[3, 1] = False
    attentions = forward(parameters, ids, mask=mask).attentions()
    assert np.all(attentions[:, :, 3, 1] == 0) and np.all(np.triu(attentions, k=1) == 0)
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-6)


def test_norms_and_activation_follow_their_formulas():
    x = np.array([[3.0, -4.0]], dtype=np.float32)
    np.testing.assert_allclose(rms_norm(x, np.array([1.0, 2.0], dtype=np.float32), 0.0),
                               [[3 / np.sqrt(12.5), -8 / np.sqrt(12.5)]], rtol=1e-6)
    values = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(silu(values), values / (1 + np.exp(-values)), rtol=1e-6)


def test_tied_and_untied_unembedding_give_the_same_logits_for_the_same_matrix():
    tied = tiny_llama()
    untied = dataclasses.replace(tied, unembedding=np.ascontiguousarray(tied.token_embeddings.T))
    ids = np.array([1, 2, 3])
    np.testing.assert_allclose(forward(untied, ids).next_logits, forward(tied, ids).next_logits, rtol=1e-5)
    assert forward(tied, ids).next_logits.shape == (40,)
    assert forward(tied, ids, num_layers=1).next_logits is None  # a partial stack predicts nothing


def test_decoder_refuses_what_it_cannot_do():
    parameters = tiny_llama()
    with pytest.raises(InvalidSetting, match="re-split"):
        forward(parameters, np.array([1, 2]), heads=2)
    with pytest.raises(InvalidSetting, match="cross-attention"):
        forward(parameters, np.array([1, 2]), pair_ids=np.array([3]))


def test_decoder_uses_only_portable_array_operations():
    """The same forward on array_api_strict arrays (the subset CuPy relies on) gives the same numbers."""
    def move(value):
        if isinstance(value, np.ndarray):
            return xps.asarray(value)
        if isinstance(value, list):
            return [move(item) for item in value]
        if dataclasses.is_dataclass(value):
            moved = {field.name: move(getattr(value, field.name)) for field in dataclasses.fields(value)}
            return dataclasses.replace(value, **moved)
        return value

    parameters = tiny_llama()
    ids = np.array([3, 17, 5, 9, 30])
    strict = forward(move(parameters), xps.asarray(ids))
    reference = forward(parameters, ids)
    assert type(strict.traces[0].weights).__module__.startswith("array_api_strict"), "stays on its backend"
    np.testing.assert_allclose(np.asarray(strict.attentions()._array), reference.attentions(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(strict.next_logits._array), reference.next_logits, atol=1e-5)


def test_top_next_tokens_are_the_softmax_over_the_whole_vocabulary():
    logits = np.array([0.0, 3.0, 1.0, 3.5, -2.0], dtype=np.float32)
    ids, probabilities = top_next_tokens(logits, k=3)
    full = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert ids.tolist() == [3, 1, 2]
    np.testing.assert_allclose(probabilities, full[[3, 1, 2]], rtol=1e-6)
    _, hotter = top_next_tokens(logits, k=1, temperature=10.0)
    assert hotter[0] < probabilities[0]  # a higher temperature flattens the distribution
    assert len(top_next_tokens(logits, k=50)[0]) == 5


def test_logit_lens_last_layer_is_the_models_own_prediction():
    parameters = tiny_llama()
    ids = np.array([3, 17, 5, 9])
    result = forward(parameters, ids)
    lens = logit_lens(parameters, result.hidden_states, 3)  # (layers, vocab)
    assert lens.shape == (2, 40)
    np.testing.assert_allclose(lens[-1], result.next_logits, rtol=1e-5, atol=1e-5)
    first_layer = unembed(parameters, rms_norm(result.hidden_states[1][1:2], parameters.final_norm, 1e-5))
    np.testing.assert_allclose(logit_lens(parameters, result.hidden_states, 1)[0], first_layer[0], rtol=1e-5)
    assert family_named("llama").logit_lens is logit_lens and family_named("bert").logit_lens is None
