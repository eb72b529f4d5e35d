"""A BERT-family encoder forward pass that records every step of attention.

Follows Hugging Face's ``modeling_bert.py`` (embeddings, then per layer:
self-attention, residual + LayerNorm, GELU feed-forward, residual + LayerNorm),
written with ``xp`` so NumPy and CuPy share it. Each layer's attention is kept as
an :class:`AttentionTrace` so the app can show Q, K, V, scores, weights and output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from attnstudio.core.ablation import Ablation, ablate_heads, check_ablation_fits
from attnstudio.core.backend import array_namespace, fused_kernel, permute_dims
from attnstudio.core.kernels import attention_scores, softmax
from attnstudio.errors import InvalidSetting


@dataclass
class AttentionTrace:
    """One layer's attention, step by step, for every head."""

    queries: Any  # (heads, n_q, d_k)
    keys: Any  # (heads, n_k, d_k)
    values: Any  # (heads, n_k, d_v)
    scores: Any  # (heads, n_q, n_k), scaled, before the mask
    weights: Any  # (heads, n_q, n_k), after mask and softmax
    context: Any  # (heads, n_q, d_v) = weights @ values

    def first_rows(self, m: int) -> AttentionTrace:
        """The trace of the first m queries over the first m keys (views, no copies)."""
        return AttentionTrace(self.queries[:, :m], self.keys[:, :m], self.values[:, :m], self.scores[:, :m, :m],
                              self.weights[:, :m, :m], self.context[:, :m])

    def head_weights(self, head: int):
        """(n_q, n_k) weights of one head."""
        return self.weights[head]

    def weight_parts(self) -> tuple[Any, list]:
        """The weights as (a (heads, m, m) block, row blocks after it): see core.extended_trace."""
        return self.weights, []

    def row_parts(self, name: str) -> list:
        """queries, keys, values or context as row parts, in order (see core.extended_trace): here one, whole."""
        return [getattr(self, name)]


@dataclass
class ForwardResult:
    traces: list[AttentionTrace]
    hidden_states: list[Any] = field(default_factory=list)  # (n, d_model) per layer boundary
    next_logits: Any = None  # (vocab,) at the last position, for models with a language-model head

    def has_next_logits(self) -> bool:
        """Whether this pass predicts a next token (without computing the prediction where it is deferred)."""
        return self.next_logits is not None

    def attentions(self):
        """(layers, heads, n_q, n_k) weights stacked on the result's backend."""
        xp = array_namespace(self.traces[0].weights)
        return xp.stack([trace.weights for trace in self.traces])


class LogitsOnReadResult(ForwardResult):
    """A forward pass whose next-token logits are computed when first read.

    Live typing paints a heatmap; the unembedding of the last position (a (d_model, vocab) product, 113 MB of
    weights for SmolLM2) is only needed by the views and commands that read the prediction.
    """

    def __init__(self, traces, hidden_states, logits_of):
        self._next_logits, self._logits_of = None, logits_of
        super().__init__(traces, hidden_states, None)

    @property
    def next_logits(self):  # (vocab,)
        if self._next_logits is None and self._logits_of is not None:
            self._next_logits, self._logits_of = self._logits_of(), None
        return self._next_logits

    @next_logits.setter
    def next_logits(self, value) -> None:
        self._next_logits = value

    def has_next_logits(self) -> bool:
        return self._next_logits is not None or self._logits_of is not None


@dataclass
class EncoderLayer:
    qkv_weight: Any  # (d_model, 3 * d_model): query, key and value projections side by side
    qkv_bias: Any  # (3 * d_model,)
    attention_out_weight: Any  # (d_model, d_model)
    attention_out_bias: Any
    attention_norm: tuple[Any, Any]  # LayerNorm (weight, bias)
    intermediate_weight: Any  # (d_model, d_ff)
    intermediate_bias: Any
    output_weight: Any  # (d_ff, d_model)
    output_bias: Any
    output_norm: tuple[Any, Any]


@dataclass
class EncoderParameters:
    """A BERT encoder's parameters on one backend, laid out for ``x @ w``."""

    word_embeddings: Any  # (vocab, d_model)
    position_embeddings: Any  # (max_positions, d_model)
    token_type_embeddings: Any  # (types, d_model)
    embedding_norm: tuple[Any, Any]
    layers: list[EncoderLayer]
    num_heads: int
    layer_norm_eps: float

    @property
    def d_model(self) -> int:
        return self.word_embeddings.shape[-1]

    @property
    def max_positions(self) -> int:
        return self.position_embeddings.shape[0]


ERF_NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
                 -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
ERF_DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
                   -1.42647390514189e-02)


def _horner(x2, coefficients):
    """c0 x2^k + ... + ck, evaluated in place (one buffer, no temporaries per step)."""
    result = x2 * coefficients[0]
    result += coefficients[1]
    for coefficient in coefficients[2:]:
        result *= x2
        result += coefficient
    return result


def erf(x):
    """Error function, accurate to ~1e-7 in float32 (Eigen's rational approximation on [-4, 4])."""
    xp = array_namespace(x)
    x = xp.clip(x, -4.0, 4.0)
    x2 = x * x
    numerator = _horner(x2, ERF_NUMERATOR)
    numerator *= x
    numerator /= _horner(x2, ERF_DENOMINATOR)
    return numerator


def gelu(x):
    """The exact (erf) GELU that BERT uses: 0.5 x (1 + erf(x / sqrt 2))."""
    fused = fused_kernel("gelu", x)
    if fused is not None:
        return fused(x)
    result = erf(x * (1.0 / math.sqrt(2.0)))
    result += 1.0
    result *= x
    result *= 0.5
    return result


def layer_norm(x, norm: tuple[Any, Any], eps: float):
    xp = array_namespace(x)
    weight, bias = norm
    fused = fused_kernel("layer_norm", x)
    if fused is not None:  # CuPy: four launches
        row_sum = xp.sum(x, axis=-1, keepdims=True)
        inv_width = x.dtype.type(1.0 / x.shape[-1])
        square_sum = xp.sum(fused_kernel("layer_norm_square", x)(x, row_sum, inv_width), axis=-1, keepdims=True)
        return fused(x, row_sum, square_sum, inv_width, weight, bias, x.dtype.type(eps))
    mean = xp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    variance = xp.mean(centred * centred, axis=-1, keepdims=True)
    return centred / xp.sqrt(variance + eps) * weight + bias


def split_heads(x, heads: int):
    """(n, heads * d_head) -> (heads, n, d_head)."""
    xp = array_namespace(x)
    n, width = x.shape
    return permute_dims(xp.reshape(x, (n, heads, width // heads)), (1, 0, 2))


def merge_heads(x):
    """(heads, n, d_head) -> (n, heads * d_head)."""
    xp = array_namespace(x)
    heads, n, d_head = x.shape
    return xp.reshape(permute_dims(x, (1, 0, 2)), (n, heads * d_head))


def valid_head_counts(d_model: int) -> list[int]:
    return [h for h in range(1, d_model + 1) if d_model % h == 0]


def embed(parameters: EncoderParameters, input_ids):
    """Word + position + token-type embeddings, normalised.  (n,) ids -> (n, d_model)."""
    xp = array_namespace(parameters.word_embeddings)
    n = input_ids.shape[0]
    x = xp.take(parameters.word_embeddings, input_ids, axis=0)
    x = x + parameters.position_embeddings[:n] + parameters.token_type_embeddings[0]
    return layer_norm(x, parameters.embedding_norm, parameters.layer_norm_eps)


def attend(x_q, x_kv, layer: EncoderLayer, heads: int, *, mask=None, score="scaled_dot", scale=None, seed=0,
           ablated_heads: tuple[int, ...] = (), ablation_mode: str = "zero"):
    """One layer's multi-head attention with every step kept.  -> (attention output (n_q, d), trace).

    ablated_heads: heads switched off in this layer (``ablation_mode`` "zero" or "uniform").
    """
    d_model = x_q.shape[-1]
    w, b = layer.qkv_weight, layer.qkv_bias
    if x_kv is x_q:
        qkv = x_q @ w + b  # (n, 3 d_model): one matmul for all three projections
        q, k, v = qkv[:, :d_model], qkv[:, d_model:2 * d_model], qkv[:, 2 * d_model:]
    else:  # cross-attention: queries from one sequence, keys and values from another
        q = x_q @ w[:, :d_model] + b[:d_model]
        kv = x_kv @ w[:, d_model:] + b[d_model:]
        k, v = kv[:, :d_model], kv[:, d_model:]
    q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)  # (heads, n, d_head)
    scores = attention_scores(q, k, score=score, scale=scale, seed=seed)  # (heads, n_q, n_k)
    weights = softmax(scores, mask)
    weights, context = ablate_heads(weights, v, ablated_heads, ablation_mode, mask)  # context (heads, n_q, d_head)
    output = merge_heads(context) @ layer.attention_out_weight + layer.attention_out_bias
    return output, AttentionTrace(q, k, v, scores, weights, context)


def encoder_layer(x, layer: EncoderLayer, heads: int, eps: float, *, x_kv=None, **attention_options):
    """Attention, residual + LayerNorm, GELU feed-forward, residual + LayerNorm."""
    attended, trace = attend(x, x if x_kv is None else x_kv, layer, heads, **attention_options)
    x = layer_norm(attended + x, layer.attention_norm, eps)
    hidden = gelu(x @ layer.intermediate_weight + layer.intermediate_bias)
    x = layer_norm(hidden @ layer.output_weight + layer.output_bias + x, layer.output_norm, eps)
    return x, trace


def encode(parameters: EncoderParameters, input_ids, *, heads: int | None = None, mask=None, score="scaled_dot",
           scale=None, seed=0, num_layers: int | None = None, pair_ids=None, pair_mask=None,
           ablation: Ablation | None = None) -> ForwardResult:
    """Run the encoder on ``input_ids`` (n,), keeping every layer's attention.

    heads: re-split the model's projections into this many heads (must divide d_model).
    mask: boolean (n_q, n_k), True = may attend, applied in every layer.
    pair_ids: cross-attention: the pair (m,) is encoded as usual (with ``pair_mask``
    as its own self-attention mask), and each layer of the main sequence attends
    from its queries to the pair's keys and values at the same depth.
    ablation: heads of the main sequence switched off (see :mod:`attnstudio.core.ablation`).
    """
    heads = parameters.num_heads if heads is None else heads
    if heads < 1 or parameters.d_model % heads:
        raise InvalidSetting(f"heads must divide the model width {parameters.d_model}; "
                             f"choose one of {valid_head_counts(parameters.d_model)}")
    num_layers = len(parameters.layers) if num_layers is None else num_layers
    check_ablation_fits(ablation, len(parameters.layers), heads)
    eps = parameters.layer_norm_eps
    options = {"score": score, "scale": scale, "seed": seed}
    pair_states = None
    if pair_ids is not None:
        pair_states = encode(parameters, pair_ids, heads=heads, mask=pair_mask, score=score, scale=scale, seed=seed,
                             num_layers=num_layers).hidden_states
    x = embed(parameters, input_ids)
    hidden_states, traces = [x], []
    for index, layer in enumerate(parameters.layers[:num_layers]):
        x_kv = None if pair_states is None else pair_states[index]
        switched_off = ablation.heads_in(index) if ablation else ()
        x, trace = encoder_layer(x, layer, heads, eps, x_kv=x_kv, mask=mask, ablated_heads=switched_off,
                                 ablation_mode=ablation.mode if ablation else "zero", **options)
        hidden_states.append(x)
        traces.append(trace)
    return ForwardResult(traces, hidden_states)
