"""The Llama decoder family (SmolLM2, Llama 2/3, Mistral, Qwen2 with its q/k/v biases): causal, RoPE, GQA, SwiGLU.

Follows Hugging Face's ``modeling_llama.py`` step by step (eager attention, float32):
per layer, RMSNorm -> attention with rotary positions and grouped key/value heads ->
residual, RMSNorm -> SwiGLU feed-forward -> residual; then a final RMSNorm and the
unembedding (tied to the token embeddings or its own matrix). Rotary embeddings use
the rotate-half layout (the GGUF reader undoes llama.cpp's interleaved layout).
Written with ``xp`` so NumPy and CuPy share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnstudio.core.ablation import Ablation, ablate_heads, check_ablation_fits
from attnstudio.core.backend import array_namespace, concat, matrix_transpose, project, to_numpy
from attnstudio.core.extended_trace import ExtendedTrace, HiddenStatesOnRead, hidden_row, hidden_row_parts
from attnstudio.core.kernels import attention_scores, softmax
from attnstudio.core.masks import causal_mask
from attnstudio.core.transformer import (
    AttentionTrace,
    ForwardResult,
    LogitsOnReadResult,
    merge_heads,
    split_heads,
)
from attnstudio.errors import InvalidSetting


@dataclass
class LlamaLayer:
    attention_norm: Any  # (d_model,) RMSNorm weight before attention
    qkv_weight: Any  # (d_model, (heads + 2 kv_heads) * head_dim): q, k, v side by side (rotate-half layout)
    attention_out_weight: Any  # (heads * head_dim, d_model)
    mlp_norm: Any  # (d_model,) RMSNorm weight before the feed-forward
    gate_up_weight: Any  # (d_model, 2 d_ff): gate and up projections side by side
    down_weight: Any  # (d_ff, d_model)
    qkv_bias: Any | None = None  # (q + 2 kv widths,): Qwen2's q/k/v biases; None: no bias (Llama)


@dataclass
class LlamaParameters:
    """A Llama-family decoder's parameters on one backend, laid out for ``x @ w``."""

    token_embeddings: Any  # (vocab, d_model)
    layers: list[LlamaLayer]
    final_norm: Any  # (d_model,)
    unembedding: Any | None  # (d_model, vocab); None: tied to token_embeddings
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads, each shared by num_heads / num_kv_heads query heads
    head_dim: int
    rope_base: float
    rms_norm_eps: float
    context_length: int
    rope_frequency_factors: Any | None = None  # (head_dim / 2,) Llama 3 long-context scaling, divides frequencies

    @property
    def d_model(self) -> int:
        return self.token_embeddings.shape[-1]

    @property
    def vocab_size(self) -> int:
        return self.token_embeddings.shape[0]

    @property
    def max_positions(self) -> int:
        return self.context_length

    @property
    def word_embeddings(self):
        """The token embedding table under the name the synthetic mode and the encoder use."""
        return self.token_embeddings

    def kv_head_of(self, head: int) -> int:
        """The key/value head query head ``head`` reads (repeat_kv: consecutive query heads share one)."""
        return head // (self.num_heads // self.num_kv_heads)


def rms_norm(x, weight, eps: float):
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis.  (n, d) -> (n, d)."""
    xp = array_namespace(x)
    variance = xp.mean(x * x, axis=-1, keepdims=True)  # (n, 1)
    return x * (1.0 / xp.sqrt(variance + eps)) * weight


def silu(x):
    """x * sigmoid(x)."""
    xp = array_namespace(x)
    return x / (1.0 + xp.exp(-x))


def rope_tables(n: int, head_dim: int, base: float, xp, dtype, frequency_factors=None):
    """cos and sin of position * frequency, each (n, head_dim / 2), computed in float32 like HF."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inverse_frequency = np.float32(1.0) / (np.float32(base) ** exponents)  # (head_dim / 2,)
    if frequency_factors is not None:
        inverse_frequency = inverse_frequency / np.asarray(to_numpy(frequency_factors), dtype=np.float32)
    angles = np.arange(n, dtype=np.float32)[:, None] * inverse_frequency[None, :]  # (n, head_dim / 2)
    return xp.asarray(np.cos(angles), dtype=dtype), xp.asarray(np.sin(angles), dtype=dtype)


def apply_rope(x, cos, sin):
    """Rotate each (i, i + d/2) pair of ``x`` (heads, n, d) by its position's angle (HF's rotate-half)."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]  # (heads, n, d / 2) each
    return concat([first * cos - second * sin, second * cos + first * sin], axis=-1)


def repeat_kv(x, num_heads: int):
    """(kv_heads, n, d) -> (num_heads, n, d): each key/value head serves a run of consecutive query heads."""
    xp = array_namespace(x)
    kv_heads = x.shape[0]
    if kv_heads == num_heads:
        return x
    index = xp.asarray(np.arange(num_heads) // (num_heads // kv_heads))
    return xp.take(x, index, axis=0)


def attend(x, layer: LlamaLayer, p: LlamaParameters, cos, sin, *, mask, score, scale, seed, past=None, join=None,
           ablated_heads: tuple[int, ...] = (), ablation_mode: str = "zero"):
    """Grouped-query self-attention with every step kept.  (n_new, d_model) -> (output (n_new, d_model), trace).

    past: the trace of the first m positions (a prefix cache); then ``x``, ``cos``, ``sin`` and ``mask``
    hold only the rows of positions m .. n-1, and the trace returned covers all n positions (no ablation then:
    the engine uses the prefix cache only when no head is switched off).
    join(name, past rows, new rows): joins the past's and the new keys or values (default: concat; see
    core.row_slots).
    ablated_heads: query heads switched off in this layer (see :mod:`attnstudio.core.ablation`).
    """
    q_width, kv_width = p.num_heads * p.head_dim, p.num_kv_heads * p.head_dim
    qkv = project(x, layer.qkv_weight)  # (n, q_width + 2 kv_width): one matmul for all three projections
    if layer.qkv_bias is not None:
        qkv = qkv + layer.qkv_bias
    q = split_heads(qkv[:, :q_width], p.num_heads)  # (heads, n, head_dim)
    k = split_heads(qkv[:, q_width:q_width + kv_width], p.num_kv_heads)  # (kv_heads, n, head_dim)
    v = split_heads(qkv[:, q_width + kv_width:], p.num_kv_heads)  # (kv_heads, n, head_dim)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k, v = repeat_kv(k, p.num_heads), repeat_kv(v, p.num_heads)  # (heads, n, head_dim)
    if past is not None:
        join = join or (lambda name, old, new: concat([old, new], axis=1))
        return _attend_after(past, q, k, v, layer, join, mask=mask, score=score, scale=scale, seed=seed)
    scores = attention_scores(q, k, score=score, scale=scale, seed=seed)  # (heads, n, n)
    weights = softmax(scores, mask)  # the mask includes the causal one
    weights, context = ablate_heads(weights, v, ablated_heads, ablation_mode, mask)  # context (heads, n, head_dim)
    output = project(merge_heads(context), layer.attention_out_weight)  # (n, d_model)
    return output, AttentionTrace(q, k, v, scores, weights, context)


def _attend_after(past: AttentionTrace, q, k, v, layer: LlamaLayer, join, *, mask, score, scale, seed):
    """The new rows' attention over the cached keys and values, and the whole trace (old rows reused)."""
    m = past.keys.shape[-2]
    keys, values = join("keys", past.keys, k), join("values", past.values, v)  # (heads, n, head_dim)
    scores = attention_scores(q, keys, score=score, scale=scale, seed=seed)  # (heads, n - m, n)
    weights = softmax(scores, mask)  # mask: rows m .. n-1, (n - m, n)
    context = weights @ values  # (heads, n - m, head_dim)
    output = project(merge_heads(context), layer.attention_out_weight)  # (n - m, d_model)
    # Old rows put weight 0 on the new keys (causal): the new trace shares the past's weights and adds the new
    # rows as a block; its queries and context are the past's parts and the new rows (not copied); scores
    # (before the mask: old rows have scores on future keys too) come when first read.
    base, blocks = past.weight_parts()
    parts = {"queries": [*past.row_parts("queries"), q], "keys": [keys], "values": [values],
             "context": [*past.row_parts("context"), context]}
    trace = ExtendedTrace(parts, base, [*blocks, (m, weights)], score=score, scale=scale, seed=seed)
    return output, trace


def feed_forward(x, layer: LlamaLayer):
    """SwiGLU: down(silu(gate(x)) * up(x)).  (n, d_model) -> (n, d_model)."""
    gate_up = project(x, layer.gate_up_weight)  # (n, 2 d_ff)
    d_ff = gate_up.shape[-1] // 2
    return project(silu(gate_up[:, :d_ff]) * gate_up[:, d_ff:], layer.down_weight)


def check_decoder_input(p, input_ids, *, pair_ids, num_layers: int | None, ablation: Ablation | None):
    """What every decoder family checks first: one text, some tokens, an ablation that fits.

    Returns (n tokens, layers to run)."""
    if pair_ids is not None:
        raise InvalidSetting("a decoder attends within one text: cross-attention needs an encoder model")
    n = input_ids.shape[0]
    if n < 1:
        raise InvalidSetting("the text has no tokens")
    check_ablation_fits(ablation, len(p.layers), p.num_heads)
    return n, len(p.layers) if num_layers is None else num_layers


def decoder_options(p, n: int, xp, *, mask, score, scale, seed, first_row: int = 0) -> dict:
    """The attention options of rows first_row .. n-1: the model's causal mask AND the user's (n, n) mask,
    and 1/sqrt(head_dim) as the default scale of scaled dot products."""
    own_mask = causal_mask(n, n, xp)[first_row:, :]  # (n - first_row, n)
    mask = own_mask if mask is None else own_mask & mask[first_row:, :]
    if scale is None and score == "scaled_dot":
        scale = 1.0 / math.sqrt(p.head_dim)
    return {"mask": mask, "score": score, "scale": scale, "seed": seed}


def forward(p: LlamaParameters, input_ids, *, heads: int | None = None, mask=None, score="scaled_dot", scale=None,
            seed=0, num_layers: int | None = None, pair_ids=None, pair_mask=None,
            ablation: Ablation | None = None) -> ForwardResult:
    """Run the decoder on ``input_ids`` (n,), keeping every layer's attention.

    mask: boolean (n, n), True = may attend; combined with the model's own causal mask.
    hidden_states: the embeddings, then each layer's output, the last one after the final
    RMSNorm (as Hugging Face reports them). next_logits (vocab,): the prediction after the
    last token, when every layer ran.
    """
    del pair_mask
    if heads not in (None, p.num_heads):
        raise InvalidSetting(f"this model has {p.num_heads} query heads sharing {p.num_kv_heads} key/value heads; "
                             f"its heads cannot be re-split")
    n, num_layers = check_decoder_input(p, input_ids, pair_ids=pair_ids, num_layers=num_layers, ablation=ablation)
    total_layers = len(p.layers)
    xp = array_namespace(p.token_embeddings)
    options = decoder_options(p, n, xp, mask=mask, score=score, scale=scale, seed=seed)
    cos, sin = rope_tables(n, p.head_dim, p.rope_base, xp, p.token_embeddings.dtype, p.rope_frequency_factors)

    x = xp.take(p.token_embeddings, input_ids, axis=0)  # (n, d_model)
    hidden_states, traces = [x], []
    for index, layer in enumerate(p.layers[:num_layers]):
        switched_off = ablation.heads_in(index) if ablation else ()
        attended, trace = attend(rms_norm(x, layer.attention_norm, p.rms_norm_eps), layer, p, cos, sin,
                                 ablated_heads=switched_off, ablation_mode=ablation.mode if ablation else "zero",
                                 **options)
        x = x + attended
        x = x + feed_forward(rms_norm(x, layer.mlp_norm, p.rms_norm_eps), layer)
        hidden_states.append(x)
        traces.append(trace)
    next_logits = None
    if num_layers == total_layers:
        x = rms_norm(x, p.final_norm, p.rms_norm_eps)
        hidden_states[-1] = x
        next_logits = unembed(p, x[-1, ...])  # (vocab,)
    return ForwardResult(traces, hidden_states, next_logits)


def extend(p: LlamaParameters, past: ForwardResult, input_ids, *, heads: int | None = None, mask=None,
           score="scaled_dot", scale=None, seed=0, num_layers: int | None = None, rows=None) -> ForwardResult:
    """:func:`forward` on ``input_ids`` (n,) reusing ``past``, a forward pass over its first m tokens.

    A causal model's first m rows (their keys, values, weights, hidden states) depend only on those
    m tokens, so only rows m .. n-1 are computed, against every layer's cached keys and values.
    ``past`` must come from the same parameters and options; ``mask`` (n, n) is the user's mask (the
    causal one is added) and its first m rows must be those ``past`` was computed with. rows: a
    ``core.row_slots.RowWriter`` to write every layer's keys and values into (None: they are joined).
    """
    if heads not in (None, p.num_heads):
        raise InvalidSetting(f"this model has {p.num_heads} query heads; its heads cannot be re-split")
    xp = array_namespace(p.token_embeddings)
    n, m = input_ids.shape[0], sum(part.shape[0] for part in hidden_row_parts(past.hidden_states, 0))
    total_layers = len(p.layers)
    num_layers = total_layers if num_layers is None else num_layers
    if not 0 < m < n or len(past.traces) != num_layers:
        raise InvalidSetting(f"a prefix of {m} tokens over {len(past.traces)} layers cannot extend "
                             f"{n} tokens over {num_layers}")
    options = decoder_options(p, n, xp, mask=mask, score=score, scale=scale, seed=seed, first_row=m)
    cos, sin = rope_tables(n, p.head_dim, p.rope_base, xp, p.token_embeddings.dtype, p.rope_frequency_factors)
    cos, sin = cos[m:], sin[m:]  # (n - m, head_dim / 2)

    x = xp.take(p.token_embeddings, input_ids[m:], axis=0)  # (n - m, d_model): the new rows only
    # (n, d_model) each: the past's rows and the new ones, joined when read (no new row reads an old one)
    hidden_parts, traces = [[*hidden_row_parts(past.hidden_states, 0), x]], []
    for index, layer in enumerate(p.layers[:num_layers]):
        join = None if rows is None else (lambda name, old, new, index=index: rows.join((index, name), old, new))
        attended, trace = attend(rms_norm(x, layer.attention_norm, p.rms_norm_eps), layer, p, cos, sin,
                                 past=past.traces[index], join=join, **options)
        x = x + attended
        x = x + feed_forward(rms_norm(x, layer.mlp_norm, p.rms_norm_eps), layer)
        if index == total_layers - 1:
            x = rms_norm(x, p.final_norm, p.rms_norm_eps)  # the past's last rows are normalised too
        hidden_parts.append([*hidden_row_parts(past.hidden_states, index + 1), x])
        traces.append(trace)
    hidden_states = HiddenStatesOnRead(hidden_parts)
    if num_layers < total_layers:
        return ForwardResult(traces, hidden_states, None)
    last = x[-1, ...]  # (d_model,)
    return LogitsOnReadResult(traces, hidden_states, lambda: unembed(p, last))  # (vocab,) when first read


def logit_lens(p: LlamaParameters, hidden_states: list, position: int):
    """What each layer would predict after token ``position``: final RMSNorm + unembedding of its output.

    hidden_states: the forward pass's (embeddings, layer 1 .. layer L, the last already normalised).
    Returns (L, vocab) logits; the last row is the model's own prediction.
    """
    layers = len(hidden_states) - 1
    rows = [rms_norm(hidden_row(hidden_states, index, position), p.final_norm, p.rms_norm_eps)
            for index in range(1, layers)]  # (1, d_model) each
    rows.append(hidden_row(hidden_states, layers, position))
    return unembed(p, concat(rows, axis=0))  # (L, vocab)


def unembed(p: LlamaParameters, x):
    """Normalised hidden state(s) (..., d_model) -> logits (..., vocab)."""
    if p.unembedding is not None:
        return x @ p.unembedding
    return p.token_embeddings @ x if x.ndim == 1 else x @ matrix_transpose(p.token_embeddings)
