"""Forward passes for long documents: the families' own steps, with attention computed over row blocks.

Each function runs the same layers as its family's ``forward`` (it reuses their norms, projections,
RoPE and feed-forwards), but the attention step goes through :class:`LongRecorder`, which keeps only
queries, keys and softmax row statistics (see :mod:`attnstudio.core.long_attention`). Hidden states are
kept for the embeddings and the final layer only ((layers + 1) x n x d_model would be 585 MB for
SmolLM2 at 8,192 tokens). NumPy only: the long mode is what keeps a laptop's memory bounded.
"""
from __future__ import annotations

import math

import numpy as np

from attnstudio.core.backend import to_numpy
from attnstudio.core.families import llama as llama_family
from attnstudio.core.long_attention import LongAttention, LongRecorder
from attnstudio.core.transformer import (
    ForwardResult,
    embed,
    gelu,
    layer_norm,
    merge_heads,
    split_heads,
)
from attnstudio.errors import InvalidSetting


def _check_options(score: str, ablation) -> None:
    if score == "additive":
        raise InvalidSetting("long documents use dot-product scores (additive scores need every weight); "
                             "choose scaled_dot or dot")
    if ablation:
        raise InvalidSetting("head ablation needs every weight kept: use a text of at most 1,024 tokens")


def _factor(score: str, scale: float | None, head_dim: int) -> float:
    if scale is not None:
        return float(scale)
    return 1.0 / math.sqrt(head_dim) if score == "scaled_dot" else 1.0


def llama_long_forward(p, input_ids, recorder: LongRecorder, *, heads=None, score="scaled_dot", scale=None,
                       ablation=None, **_ignored) -> tuple[ForwardResult, LongAttention]:
    """:func:`attnstudio.core.families.llama.forward` for a long text.  -> (ForwardResult with no traces and
    hidden states [embeddings, final], the kept attention)."""
    _check_options(score, ablation)
    if heads not in (None, p.num_heads):
        raise InvalidSetting(f"this model has {p.num_heads} query heads; its heads cannot be re-split")
    ids = np.asarray(to_numpy(input_ids))
    n = ids.shape[0]
    factor = _factor(score, scale, p.head_dim)
    cos, sin = llama_family.rope_tables(n, p.head_dim, p.rope_base, np, np.float32, p.rope_frequency_factors)
    q_width, kv_width = p.num_heads * p.head_dim, p.num_kv_heads * p.head_dim
    x = np.take(p.token_embeddings, ids, axis=0)  # (n, d_model)
    embeddings = x
    for layer in p.layers:
        normed = llama_family.rms_norm(x, layer.attention_norm, p.rms_norm_eps)
        qkv = normed @ layer.qkv_weight  # (n, q_width + 2 kv_width)
        if layer.qkv_bias is not None:
            qkv = qkv + layer.qkv_bias
        q = split_heads(qkv[:, :q_width], p.num_heads)  # (heads, n, head_dim)
        k = split_heads(qkv[:, q_width:q_width + kv_width], p.num_kv_heads)  # (kv_heads, n, head_dim)
        v = split_heads(qkv[:, q_width + kv_width:], p.num_kv_heads)  # (kv_heads, n, head_dim)
        del qkv, normed
        q, k = llama_family.apply_rope(q, cos, sin), llama_family.apply_rope(k, cos, sin)
        context = recorder.attend(q, k, v, factor=factor)  # (heads, n, head_dim)
        x = x + merge_heads(context) @ layer.attention_out_weight
        del context, q, k, v
        x = x + llama_family.feed_forward(llama_family.rms_norm(x, layer.mlp_norm, p.rms_norm_eps), layer)
    x = llama_family.rms_norm(x, p.final_norm, p.rms_norm_eps)
    return ForwardResult([], [embeddings, x], llama_family.unembed(p, x[-1])), recorder.finish()


def bert_long_forward(parameters, input_ids, recorder: LongRecorder, *, heads=None, score="scaled_dot", scale=None,
                      ablation=None, pair_ids=None, **_ignored) -> tuple[ForwardResult, LongAttention]:
    """:func:`attnstudio.core.transformer.encode` keeping queries, keys and row statistics only."""
    _check_options(score, ablation)
    if pair_ids is not None:
        raise InvalidSetting("cross-attention keeps every weight: use texts of at most 1,024 tokens")
    heads = parameters.num_heads if heads is None else heads
    if heads < 1 or parameters.d_model % heads:
        raise InvalidSetting(f"heads must divide the model width {parameters.d_model}")
    ids = np.asarray(to_numpy(input_ids))
    d_model, eps = parameters.d_model, parameters.layer_norm_eps
    factor = _factor(score, scale, d_model // heads)
    x = embed(parameters, ids)
    embeddings = x
    for layer in parameters.layers:
        qkv = x @ layer.qkv_weight + layer.qkv_bias  # (n, 3 d_model)
        q, k, v = (split_heads(qkv[:, i * d_model:(i + 1) * d_model], heads) for i in range(3))
        context = recorder.attend(q, k, v, factor=factor)  # (heads, n, d_head)
        attended = merge_heads(context) @ layer.attention_out_weight + layer.attention_out_bias
        x = layer_norm(attended + x, layer.attention_norm, eps)
        hidden = gelu(x @ layer.intermediate_weight + layer.intermediate_bias)
        x = layer_norm(hidden @ layer.output_weight + layer.output_bias + x, layer.output_norm, eps)
    return ForwardResult([], [embeddings, x]), recorder.finish()


# family name -> its long forward pass; a family missing here keeps every weight (and its own context limit)
LONG_FORWARDS = {"llama": llama_long_forward, "bert": bert_long_forward}
