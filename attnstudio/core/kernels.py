"""Attention kernels: softmax(score(Q, K)) V, written once for every array backend.

Shapes follow nanoGPT's habit of naming them on each line:
q (..., heads, n_q, d_k), k (..., heads, n_k, d_k), v (..., heads, n_k, d_v).
The array module ``xp`` is taken from the inputs, so NumPy, CuPy and
array_api_strict arrays all run the same code and results stay on their backend.
"""
from __future__ import annotations

import math

import numpy as np

from attnstudio.core.backend import array_namespace, concat, exp_inplace, matrix_transpose
from attnstudio.errors import InvalidSetting

SCORE_FUNCTIONS = ("scaled_dot", "dot", "additive")
# attention(..., return_weights=False) switches to the tiled kernel from this many scores per head.
TILED_MIN_SCORES = 512 * 512
ADDITIVE_CHUNK_ELEMENTS = 1 << 22


def _scalar(value, like):
    xp = array_namespace(like)
    return xp.asarray(value, dtype=like.dtype)


def softmax(scores, mask=None, *, overwrite: bool = False):
    """Row softmax over the last axis with masked entries exactly 0.

    Subtracts the row maximum first, so large logits do not overflow; a row with
    every entry masked comes out as zeros, never NaN. ``overwrite=True`` lets it
    reuse the ``scores`` buffer (the caller will not read it again).
    """
    xp = array_namespace(scores)
    if mask is not None:
        scores = xp.where(mask, scores, _scalar(-math.inf, scores))  # a fresh array: ours to overwrite
        overwrite = True
    row_max = xp.max(scores, axis=-1, keepdims=True)
    row_max = xp.where(xp.isfinite(row_max), row_max, _scalar(0.0, scores))  # fully masked row
    if overwrite:
        scores -= row_max
        weights = exp_inplace(scores)
    else:
        weights = xp.exp(scores - row_max)
    total = xp.sum(weights, axis=-1, keepdims=True)
    weights /= xp.where(total > 0, total, _scalar(1.0, total))
    return weights


def score_scale(score: str, d_k: int, scale: float | None) -> float:
    """The factor applied to raw scores: 1/sqrt(d_k) for scaled_dot, 1 otherwise, unless overridden."""
    if scale is not None:
        return float(scale)
    return 1.0 / math.sqrt(d_k) if score == "scaled_dot" else 1.0


def additive_parameters(d_k: int, seed: int = 0, d_attn: int | None = None):
    """Seeded Bahdanau parameters (w_q, w_k: (d_k, d_attn), v_a: (d_attn,)) as float64 NumPy arrays.

    Drawn on the host so the same seed gives the same numbers on every backend.
    """
    d_attn = d_attn or d_k
    rng = np.random.default_rng(seed)
    w_q = rng.standard_normal((d_k, d_attn)) / math.sqrt(d_k)
    w_k = rng.standard_normal((d_k, d_attn)) / math.sqrt(d_k)
    v_a = rng.standard_normal(d_attn) / math.sqrt(d_attn)
    return w_q, w_k, v_a


def additive_scores(q, k, *, seed: int = 0):
    """Bahdanau scores v_a^T tanh(W_q q_i + W_k k_j).  (..., n_q, d_k), (..., n_k, d_k) -> (..., n_q, n_k).

    Query rows are processed in chunks so the (n_q, n_k, d_attn) features never
    exceed a few million elements.
    """
    xp = array_namespace(q, k)
    w_q, w_k, v_a = (xp.asarray(p, dtype=q.dtype) for p in additive_parameters(q.shape[-1], seed))
    projected_q = q @ w_q  # (..., n_q, d_attn)
    projected_k = k @ w_k  # (..., n_k, d_attn)
    n_q, n_k, d_attn = q.shape[-2], k.shape[-2], w_q.shape[-1]
    batch = math.prod(q.shape[:-2]) if q.ndim > 2 else 1
    rows_per_chunk = max(1, ADDITIVE_CHUNK_ELEMENTS // max(1, batch * n_k * d_attn))
    chunks = []
    for start in range(0, n_q, rows_per_chunk):
        q_rows = xp.expand_dims(projected_q[..., start:min(n_q, start + rows_per_chunk), :], axis=-2)
        features = xp.tanh(q_rows + xp.expand_dims(projected_k, axis=-3))  # (..., rows, n_k, d_attn)
        chunks.append(features @ v_a)  # (..., rows, n_k)
    return chunks[0] if len(chunks) == 1 else concat(chunks, axis=-2)


def attention_scores(q, k, *, score: str = "scaled_dot", scale: float | None = None, seed: int = 0):
    """Scores before the mask and softmax.  (..., n_q, d_k), (..., n_k, d_k) -> (..., n_q, n_k)."""
    if score not in SCORE_FUNCTIONS:
        raise InvalidSetting(f"unknown score function {score!r}; choose one of {', '.join(SCORE_FUNCTIONS)}")
    factor = score_scale(score, q.shape[-1], scale)
    if score == "additive":
        scores = additive_scores(q, k, seed=seed)
    else:
        scores = q @ matrix_transpose(k)
    if factor != 1.0:
        scores *= factor  # a fresh array: scale it in place
    return scores


def _check_shapes(q, k, v):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise InvalidSetting("q, k and v need at least 2 dimensions (n, d)")
    if q.shape[-1] != k.shape[-1]:
        raise InvalidSetting(f"q and k must share d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise InvalidSetting(f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")


def attention(q, k, v, *, mask=None, scale=None, score="scaled_dot", return_weights=True, seed=0):
    """softmax(score(q, k)) @ v, on the backend of the inputs.

    q (..., heads, n_q, d_k), k (..., heads, n_k, d_k), v (..., heads, n_k, d_v);
    mask: boolean, broadcastable to (..., heads, n_q, n_k), True = may attend.
    Returns (output (..., heads, n_q, d_v), weights (..., heads, n_q, n_k)), or the
    output alone when ``return_weights`` is False (then large inputs use the
    memory-lean tiled kernel).
    """
    _check_shapes(q, k, v)
    if not return_weights and score != "additive" and q.shape[-2] * k.shape[-2] >= TILED_MIN_SCORES:
        return attention_tiled(q, k, v, mask=mask, scale=scale, score=score)
    scores = attention_scores(q, k, score=score, scale=scale, seed=seed)  # (..., n_q, n_k)
    weights = softmax(scores, mask, overwrite=True)  # the scores are not returned: reuse their memory
    output = weights @ v  # (..., n_q, d_v)
    return (output, weights) if return_weights else output


def attention_naive(q, k, v, *, mask=None, scale=None, score="scaled_dot"):
    """The textbook kernel: materialises every (n_q, n_k) weight.  Returns the output."""
    return attention(q, k, v, mask=mask, scale=scale, score=score, return_weights=True)[0]


def attention_tiled(q, k, v, *, mask=None, scale=None, score="scaled_dot", block_q=256, block_k=1024):
    """Flash-style attention: an online softmax over (block_q, block_k) tiles.

    Never holds more than (..., block_q, block_k) scores, so memory grows with n,
    not n^2. Same result as :func:`attention` to float rounding.
    """
    _check_shapes(q, k, v)
    if score == "additive":
        raise InvalidSetting("the tiled kernel supports the dot-product scores only")
    xp = array_namespace(q, k, v)
    n_q, n_k = q.shape[-2], k.shape[-2]
    factor = score_scale(score, q.shape[-1], scale)
    if mask is not None:
        mask = xp.broadcast_to(xp.asarray(mask), q.shape[:-2] + (n_q, n_k))
    keys_t = matrix_transpose(k)  # (..., d_k, n_k)
    minus_inf, zero = _scalar(-math.inf, q), _scalar(0.0, q)
    blocks = []
    for q_start in range(0, n_q, block_q):
        q_stop = min(n_q, q_start + block_q)  # the array API forbids out-of-bounds slice stops
        q_block = q[..., q_start:q_stop, :] * factor  # scaling q is cheaper than scaling scores
        rows = q_stop - q_start
        running_max = xp.full(q.shape[:-2] + (rows, 1), -math.inf, dtype=q.dtype)
        running_sum = xp.zeros(q.shape[:-2] + (rows, 1), dtype=q.dtype)
        accumulator = xp.zeros(q.shape[:-2] + (rows, v.shape[-1]), dtype=q.dtype)
        for k_start in range(0, n_k, block_k):
            k_stop = min(n_k, k_start + block_k)
            scores = q_block @ keys_t[..., k_start:k_stop]  # (..., rows, block_k)
            if mask is not None:
                scores = xp.where(mask[..., q_start:q_stop, k_start:k_stop], scores, minus_inf)
            new_max = xp.maximum(running_max, xp.max(scores, axis=-1, keepdims=True))
            safe_max = xp.where(xp.isfinite(new_max), new_max, zero)
            scores -= safe_max  # scores is this tile's own buffer
            probabilities = exp_inplace(scores)
            correction = xp.exp(running_max - safe_max)  # rescales what was summed under the old maximum
            running_sum = running_sum * correction + xp.sum(probabilities, axis=-1, keepdims=True)
            accumulator = accumulator * correction + probabilities @ v[..., k_start:k_stop, :]
            running_max = new_max
        blocks.append(accumulator / xp.where(running_sum > 0, running_sum, _scalar(1.0, q)))
    return blocks[0] if len(blocks) == 1 else concat(blocks, axis=-2)


def attention_sliding_window(q, k, v, *, width: int, scale=None, score="scaled_dot", block_q=256):
    """Local attention where query i sees keys |i - j| <= width, at cost O(n * width).

    Each block of queries only scores the band of keys it can reach. Returns the output.
    """
    _check_shapes(q, k, v)
    if score == "additive":
        raise InvalidSetting("the sliding-window kernel supports the dot-product scores only")
    xp = array_namespace(q, k, v)
    n_q, n_k = q.shape[-2], k.shape[-2]
    factor = score_scale(score, q.shape[-1], scale)
    blocks = []
    for q_start in range(0, n_q, block_q):
        q_stop = min(n_q, q_start + block_q)
        k_start, k_stop = max(0, q_start - width), min(n_k, q_stop + width)
        scores = (q[..., q_start:q_stop, :] * factor) @ matrix_transpose(k[..., k_start:k_stop, :])
        rows = xp.reshape(xp.arange(q_start, q_stop), (q_stop - q_start, 1))
        cols = xp.reshape(xp.arange(k_start, k_stop), (1, k_stop - k_start))
        band = xp.abs(cols - rows) <= width
        blocks.append(softmax(scores, band) @ v[..., k_start:k_stop, :])
    return blocks[0] if len(blocks) == 1 else concat(blocks, axis=-2)
