"""Properties of the attention kernels, on NumPy, on array_api_strict (the portable subset CuPy relies on)
and on CuPy where a CUDA GPU is usable."""
from __future__ import annotations

import math

import array_api_strict
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import attnstudio.core.kernels as module
from attnstudio.core import (
    attention,
    attention_sliding_window,
    attention_tiled,
    causal_mask,
    sliding_window_mask,
    softmax,
)
from attnstudio.core.backend import cupy_status, to_numpy
from attnstudio.core.kernels import attention_scores
from attnstudio.errors import InvalidSetting

GPU_USABLE, GPU_REASON = cupy_status()
NAMESPACES = {"numpy": np, "array_api_strict": array_api_strict}
if GPU_USABLE:
    import cupy

    NAMESPACES["cupy"] = cupy
BACKENDS = ["numpy", "array_api_strict",
            pytest.param("cupy", marks=[pytest.mark.gpu,
                                        pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")])]


def on(xp, array):
    return xp.asarray(np.asarray(array))


def host(array):
    if type(array).__module__.startswith("cupy"):
        return to_numpy(array)
    return np.asarray(array) if not hasattr(array, "__array_namespace__") or isinstance(array, np.ndarray) \
        else np.asarray(array_api_strict.asarray(array)._array)


@st.composite
def qkv_and_mask(draw, dtype=np.float32):
    heads = draw(st.integers(1, 3))
    n_q, n_k, d_k, d_v = (draw(st.integers(1, 7)) for _ in range(4))
    values = st.floats(-4, 4, width=32)
    q = draw(arrays(dtype, (heads, n_q, d_k), elements=values))
    k = draw(arrays(dtype, (heads, n_k, d_k), elements=values))
    v = draw(arrays(dtype, (heads, n_k, d_v), elements=values))
    mask = draw(arrays(np.bool_, (n_q, n_k)))
    return q, k, v, mask


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(data=qkv_and_mask(), score=st.sampled_from(["scaled_dot", "dot", "additive"]))
def test_rows_sum_to_one_and_masked_weights_are_exactly_zero(name, data, score):
    xp = NAMESPACES[name]
    q, k, v, mask = data
    output, weights = attention(on(xp, q), on(xp, k), on(xp, v), mask=on(xp, mask), score=score)
    assert type(weights) is type(on(xp, q)), "the result stays on the inputs' backend"
    weights, output = host(weights), host(output)
    assert np.isfinite(weights).all() and np.isfinite(output).all()
    assert (weights[:, ~mask] == 0).all()
    row_sums = weights.sum(-1)
    fully_masked = ~mask.any(-1)
    np.testing.assert_allclose(row_sums[:, ~fully_masked], 1.0, atol=1e-5)
    assert (row_sums[:, fully_masked] == 0).all(), "a fully masked row gives zero weights"
    assert (output[:, fully_masked] == 0).all(), "and zero output"


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(data=qkv_and_mask(), seed=st.integers(0, 10_000))
def test_permutation_equivariance_without_mask(name, data, seed):
    xp = NAMESPACES[name]
    q, k, v, _ = data
    rng = np.random.default_rng(seed)
    query_order, key_order = rng.permutation(q.shape[1]), rng.permutation(k.shape[1])
    output, weights = (host(a) for a in attention(on(xp, q), on(xp, k), on(xp, v)))
    permuted_output, permuted_weights = (host(a) for a in attention(
        on(xp, q[:, query_order]), on(xp, k[:, key_order]), on(xp, v[:, key_order])))
    np.testing.assert_allclose(permuted_weights, weights[:, query_order][:, :, key_order], atol=1e-5)
    np.testing.assert_allclose(permuted_output, output[:, query_order], atol=1e-4)


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(data=qkv_and_mask())
def test_causal_mask_gives_lower_triangular_weights(name, data):
    xp = NAMESPACES[name]
    q, _, _, _ = data
    n = q.shape[1]
    _, weights = attention(on(xp, q), on(xp, q), on(xp, q), mask=causal_mask(n, n, xp))
    weights = host(weights)
    assert (np.triu(weights, 1) == 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(weights[:, 0, 0], 1.0, atol=1e-6), "the first token only sees itself"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_are_stable(dtype):
    q = np.array([[[1e4, -1e4], [3e4, 2e4]]], dtype=dtype)
    output, weights = attention(q, q, q, score="dot")
    assert weights.dtype == dtype and output.dtype == dtype
    assert np.isfinite(weights).all() and np.isfinite(output).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


def test_matches_the_formula_written_out():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 5, 8)) for _ in range(3))
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(8)
    expected = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    output, weights = attention(q, k, v)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    np.testing.assert_allclose(output, expected @ v, rtol=1e-12)


def test_scale_override_and_dot_score():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 4, 16)) for _ in range(3))
    _, dot = attention(q, k, v, score="dot")
    _, scaled_by_one = attention(q, k, v, scale=1.0)
    np.testing.assert_allclose(dot, scaled_by_one)
    _, hot = attention(q, k, v, scale=10.0)
    _, cold = attention(q, k, v, scale=0.01)
    assert hot.max() > dot.max() > cold.max(), "a larger scale (lower temperature) sharpens"


def test_additive_scores_are_seeded():
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((2, 3, 4, 6)).astype(np.float32), rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    first = attention_scores(q, k, score="additive", seed=7)
    assert first.shape == (2, 3, 4, 5) and first.dtype == np.float32
    np.testing.assert_array_equal(first, attention_scores(q, k, score="additive", seed=7))
    assert not np.allclose(first, attention_scores(q, k, score="additive", seed=8))


def test_batch_dimensions_and_broadcast_mask():
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 3, 6, 4)).astype(np.float32) for _ in range(3))
    output, weights = attention(q, k, v, mask=causal_mask(6, 6))
    assert output.shape == (2, 3, 6, 4) and weights.shape == (2, 3, 6, 6)
    assert (np.triu(weights, 1) == 0).all()


def test_bad_shapes_and_score_are_refused():
    q = np.zeros((2, 3, 4))
    with pytest.raises(InvalidSetting, match="d_k"):
        attention(q, np.zeros((2, 3, 5)), q)
    with pytest.raises(InvalidSetting, match="number of keys"):
        attention(q, q, np.zeros((2, 4, 4)))
    with pytest.raises(InvalidSetting, match="unknown score"):
        attention(q, q, q, score="cosine")


def test_softmax_of_a_fully_masked_row_is_zero_not_nan():
    weights = softmax(np.ones((2, 3), dtype=np.float32), np.array([[True, False, True], [False, False, False]]))
    np.testing.assert_array_equal(weights[1], 0)
    np.testing.assert_allclose(weights[0], [0.5, 0, 0.5])


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(n_q=st.integers(1, 70), n_k=st.integers(1, 70), block_q=st.integers(1, 32), block_k=st.integers(1, 32),
       use_mask=st.booleans(), seed=st.integers(0, 1000))
def test_tiled_kernel_matches_naive(name, n_q, n_k, block_q, block_k, use_mask, seed):
    xp = NAMESPACES[name]
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, n, 8)).astype(np.float32) for n in (n_q, n_k, n_k))
    mask = rng.random((n_q, n_k)) > 0.3 if use_mask else None
    expected, _ = attention(q, k, v, mask=mask)
    tiled = attention_tiled(on(xp, q), on(xp, k), on(xp, v), mask=None if mask is None else on(xp, mask),
                            block_q=block_q, block_k=block_k)
    assert host(tiled).dtype == np.float32
    np.testing.assert_allclose(host(tiled), expected, atol=1e-5, rtol=1e-5)
    # In float64 the two kernels agree to rounding, so any tiling bug shows.
    q64, k64, v64 = (a.astype(np.float64) * 3 for a in (q, k, v))
    expected64, _ = attention(q64, k64, v64, mask=mask)
    tiled64 = attention_tiled(q64, k64, v64, mask=mask, block_q=block_q, block_k=block_k)
    np.testing.assert_allclose(tiled64, expected64, atol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_tiled_kernel_with_huge_and_rising_scores(name):
    # Scores far beyond exp()'s range, growing along the keys (so later tiles must raise the reference),
    # and rows masked entirely in the first tile: the NumPy kernel's bound check and every backend's
    # online maximum must both keep the result exact.
    xp = NAMESPACES[name]
    rng = np.random.default_rng(7)
    q = rng.standard_normal((3, 40, 8)).astype(np.float32) * 30
    k = (rng.standard_normal((3, 90, 8)) * np.linspace(0.1, 40, 90)[:, None]).astype(np.float32)
    v = rng.standard_normal((3, 90, 8)).astype(np.float32)
    mask = np.ones((40, 90), dtype=bool)
    mask[:5, :30] = False  # the first tile sees nothing for these rows
    mask[5, :] = False  # a row that sees nothing at all
    expected, weights = attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask=mask)
    tiled = host(attention_tiled(on(xp, q), on(xp, k), on(xp, v), mask=on(xp, mask), block_q=16, block_k=30))
    assert np.isfinite(tiled).all()
    np.testing.assert_array_equal(tiled[:, 5], 0)
    np.testing.assert_allclose(tiled, expected, atol=2e-4)


def test_attention_without_weights_uses_the_tiled_kernel_for_large_inputs(monkeypatch):
    calls = []
    real = module.attention_tiled
    monkeypatch.setattr(module, "attention_tiled", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 600, 16)).astype(np.float32) for _ in range(3))
    output = module.attention(q, k, v, mask=causal_mask(600, 600), return_weights=False)
    assert calls, "the tiled kernel ran"
    expected, _ = module.attention(q, k, v, mask=causal_mask(600, 600))
    np.testing.assert_allclose(output, expected, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("n,width,block", [(1, 0, 4), (17, 0, 4), (40, 3, 8), (100, 7, 16), (33, 50, 8)])
def test_sliding_window_kernel_matches_masked_naive(name, n, width, block):
    xp = NAMESPACES[name]
    rng = np.random.default_rng(n + width)
    q, k, v = (rng.standard_normal((3, n, 8)).astype(np.float32) for _ in range(3))
    expected, _ = attention(q, k, v, mask=sliding_window_mask(n, n, width))
    result = attention_sliding_window(on(xp, q), on(xp, k), on(xp, v), width=width, block_q=block)
    np.testing.assert_allclose(host(result), expected, atol=1e-5)
