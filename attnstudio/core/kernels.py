"""Attention kernels: softmax(score(Q, K)) V, written once for every array backend.

Shapes follow nanoGPT's habit of naming them on each line:
q (..., heads, n_q, d_k), k (..., heads, n_k, d_k), v (..., heads, n_k, d_v).
The array module ``xp`` is taken from the inputs, so NumPy, CuPy and
array_api_strict arrays all run the same code and results stay on their backend.
"""
from __future__ import annotations

import math

import numpy as np

from attnstudio.core import parallel
from attnstudio.core.backend import (
    array_namespace,
    concat,
    exp_inplace,
    fused_kernel,
    is_host_array,
    masked_fill,
    matrix_transpose,
)
from attnstudio.core.scores import SCORE_FUNCTIONS, SCORES
from attnstudio.errors import InvalidSetting

# attention(..., return_weights=False) switches to the tiled kernel from this many scores per head.
TILED_MIN_SCORES = 512 * 512
ADDITIVE_CHUNK_ELEMENTS = 1 << 22
# The tiled kernel lets scores run this far above its softmax reference: exp(60) ~ 1e26 stays finite in
# float32 even summed over millions of keys, and scores further below it are negligible by then.
OVERFLOW_MARGIN = 60.0
# Tiles of scores: (block_q, block_k) on the CPU; on a GPU up to this many scores per tile (256 MiB float32).
CPU_TILE = (512, 512)
DEVICE_TILE_SCORES = 1 << 26


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
        # overwrite: in place where the backend allows (no second (n, n) array); else a fresh array, ours to overwrite
        scores = masked_fill(scores, mask, _scalar(-math.inf, scores), inplace=overwrite)
        overwrite = True
    row_max = xp.max(scores, axis=-1, keepdims=True)
    fused_exp = fused_kernel("softmax_exp", scores)
    if fused_exp is not None:  # CuPy: the same steps in two launches
        weights = fused_exp(scores, row_max, *((scores,) if overwrite else ()))
        total = xp.sum(weights, axis=-1, keepdims=True)
        return fused_kernel("softmax_normalise", scores)(weights, total, weights)
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
    return SCORES[score].scale(d_k)


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
        if factor != 1.0 and k.shape[-2] > q.shape[-1]:
            q = q * factor  # scaling the (n_q, d_k) queries is cheaper than the (n_q, n_k) scores
            factor = 1.0
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


def _over_head_groups(kernel, q, k, v, mask, **options):
    """``kernel`` run on each group of heads in parallel; outputs joined along the heads axis."""
    heads = q.shape[0]
    parts = parallel.run_groups(
        lambda group: kernel(q[group], k[group], v[group], mask=parallel.split_mask(mask, heads, group), **options),
        parallel.head_groups(heads, parallel.cpu_workers()))
    return np.concatenate(parts, axis=0)


def attention_naive(q, k, v, *, mask=None, scale=None, score="scaled_dot"):
    """The textbook kernel: materialises every (n_q, n_k) weight.  Returns the output."""
    return attention(q, k, v, mask=mask, scale=scale, score=score, return_weights=True)[0]


def tile_shape(xp, heads: int) -> tuple[int, int]:
    """(block_q, block_k) for the tiled kernel on backend ``xp`` with ``heads`` heads per call.

    On the CPU a tile of scores should stay near the cache; on a GPU each tile costs a dozen kernel
    launches, so tiles are as large as DEVICE_TILE_SCORES allows.
    """
    if getattr(xp, "__name__", "") != "cupy":  # a module, not an array: is_cupy_array does not apply
        return CPU_TILE
    block_q = block_k = 256
    while heads * block_q * block_k * 2 <= DEVICE_TILE_SCORES:
        if block_k <= block_q:
            block_k *= 2
        else:
            block_q *= 2
    return block_q, block_k


def attention_tiled(q, k, v, *, mask=None, scale=None, score="scaled_dot", block_q=None, block_k=None):
    """Flash-style attention: an online softmax over (block_q, block_k) tiles.

    Never holds more than (..., block_q, block_k) scores, so memory grows with n,
    not n^2. Same result as :func:`attention` to float rounding.
    """
    _check_shapes(q, k, v)
    if score == "additive":
        raise InvalidSetting("the tiled kernel supports the dot-product scores only")
    heads = math.prod(q.shape[:-2])
    tiles = tile_shape(array_namespace(q, k, v), heads)
    block_q, block_k = block_q or tiles[0], block_k or tiles[1]
    if parallel.worth_splitting(q, k, v, mask):
        return _over_head_groups(_attention_tiled, q, k, v, mask, scale=scale, score=score,
                                 block_q=block_q, block_k=block_k)
    return _attention_tiled(q, k, v, mask=mask, scale=scale, score=score, block_q=block_q, block_k=block_k)


def _attention_tiled(q, k, v, *, mask, scale, score, block_q, block_k):
    """The online softmax, with two passes over each tile folded into its matmuls.

    The scores come out already shifted by the running reference: q carries an extra column -ref and
    the keys a column of ones, so q_aug @ k_aug^T = q k^T - ref. The values carry a column of ones, so
    the matmul that accumulates p @ v also sums p. The reference only has to keep exp() finite: on
    NumPy a tile's row maxima are computed only where the bound |q| |k| says a score could exceed the
    reference by OVERFLOW_MARGIN; other backends take the exact maximum of every tile (a bound check
    there would wait for the device).
    """
    xp = array_namespace(q, k, v)
    n_q, n_k, d_v = q.shape[-2], k.shape[-2], v.shape[-1]
    factor = score_scale(score, q.shape[-1], scale)
    if mask is not None:
        mask = xp.broadcast_to(xp.asarray(mask), q.shape[:-2] + (n_q, n_k))
    lazy = is_host_array(q)  # a bound check on a GPU would wait for the device
    keys_t = matrix_transpose(concat([k, xp.ones(k.shape[:-1] + (1,), dtype=k.dtype)], axis=-1))  # (.., d_k+1, n_k)
    values = concat([v, xp.ones(v.shape[:-1] + (1,), dtype=v.dtype)], axis=-1)  # (..., n_k, d_v + 1)
    key_norms = xp.sqrt(xp.sum(k * k, axis=-1)) if lazy else None  # (..., n_k)
    minus_inf, zero = _scalar(-math.inf, q), _scalar(0.0, q)
    blocks = []
    for q_start in range(0, n_q, block_q):
        q_stop = min(n_q, q_start + block_q)  # the array API forbids out-of-bounds slice stops
        q_block = q[..., q_start:q_stop, :] * factor  # scaling q is cheaper than scaling scores
        reference = xp.zeros(q_block.shape[:-1] + (1,), dtype=q.dtype)  # (..., rows, 1)
        q_aug = concat([q_block, reference], axis=-1)  # (..., rows, d_k + 1): the last column is -reference
        accumulator = xp.zeros(q_block.shape[:-1] + (d_v + 1,), dtype=q.dtype)  # [sum p v | sum p]
        q_norms = xp.sqrt(xp.sum(q_block * q_block, axis=-1, keepdims=True)) if lazy else None
        first = True
        for k_start in range(0, n_k, block_k):
            k_stop = min(n_k, k_start + block_k)
            scores = q_aug @ keys_t[..., k_start:k_stop]  # (..., rows, block_k): q k^T - reference
            if mask is not None:
                scores = masked_fill(scores, mask[..., q_start:q_stop, k_start:k_stop], minus_inf, inplace=True)
            if lazy:
                bound = q_norms * xp.max(key_norms[..., k_start:k_stop], axis=-1, keepdims=True)[..., None]
                check = bool(xp.max(bound - reference) > OVERFLOW_MARGIN)
            else:
                check = True
            if check:
                tile_max = xp.max(scores, axis=-1, keepdims=True)  # relative to the reference
                raise_by = (xp.isfinite(tile_max) if first else tile_max > zero)
                shift = xp.where(raise_by & xp.isfinite(tile_max), tile_max, zero)
                scores -= shift
                accumulator = accumulator * xp.exp(-shift)  # rescales what was summed under the old reference
                reference = reference + shift
                q_aug = concat([q_block, -reference], axis=-1)
            first = False
            probabilities = exp_inplace(scores)
            accumulator = accumulator + probabilities @ values[..., k_start:k_stop, :]
            del scores, probabilities  # free this tile before the next one is allocated
        total = accumulator[..., d_v:]
        blocks.append(accumulator[..., :d_v] / xp.where(total > 0, total, _scalar(1.0, q)))
    return blocks[0] if len(blocks) == 1 else concat(blocks, axis=-2)


def attention_sliding_window(q, k, v, *, width: int, scale=None, score="scaled_dot", block_q=256):
    """Local attention where query i sees keys |i - j| <= width, at cost O(n * width).

    Each block of queries only scores the band of keys it can reach. Returns the output.
    """
    _check_shapes(q, k, v)
    if score == "additive":
        raise InvalidSetting("the sliding-window kernel supports the dot-product scores only")
    band_scores = math.prod(q.shape[:-1]) * min(k.shape[-2], 2 * width + block_q)  # heads * n_q * band
    if parallel.worth_splitting(q, k, v, None, scores=band_scores):
        return _over_head_groups(_attention_sliding_window, q, k, v, None, width=width, scale=scale, score=score,
                                 block_q=block_q)
    return _attention_sliding_window(q, k, v, mask=None, width=width, scale=scale, score=score, block_q=block_q)


def _attention_sliding_window(q, k, v, *, mask, width, scale, score, block_q):
    del mask  # the band is the mask
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
