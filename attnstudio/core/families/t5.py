"""The T5 encoder-decoder family: relative position buckets, RMS norms, no score scaling, cross-attention.

Follows Hugging Face's ``modeling_t5.py`` (eager attention, float32) step by step. One token
embedding table (``shared``) feeds both stacks. Encoder, per layer: T5 LayerNorm (RMS, weight
only) -> self-attention -> residual, T5 LayerNorm -> feed-forward (ReLU, or gated GELU in
T5 v1.1 / Flan-T5) -> residual; a final norm. The scores are ``q k^T + bias`` with no 1/sqrt(d)
(T5 folds it into the initialisation); the bias comes from the first layer's bucketed relative
position table and every layer reuses it. Decoder, per layer: causal self-attention (its own
bias table, buckets of past distances only), cross-attention from the target to the encoder's
output (no position bias), feed-forward; a final norm, then the language-model head: the
shared table scaled by d_model**-0.5 when tied, its own matrix when not. Written with ``xp``
so NumPy and CuPy share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnstudio.core.ablation import Ablation, ablate_heads, check_ablation_fits
from attnstudio.core.backend import array_namespace, matrix_transpose
from attnstudio.core.families.gpt2 import gelu_tanh
from attnstudio.core.families.llama import rms_norm, silu
from attnstudio.core.kernels import attention_scores, softmax
from attnstudio.core.masks import causal_mask
from attnstudio.core.transformer import AttentionTrace, ForwardResult, gelu, merge_heads, split_heads
from attnstudio.errors import InvalidSetting

# feed-forward activations T5 checkpoints name (config ``feed_forward_proj``: "relu", "gated-gelu", ...)
ACTIVATIONS = {"relu": lambda x: array_namespace(x).maximum(x, 0.0), "gelu": gelu, "gelu_new": gelu_tanh,
               "gelu_pytorch_tanh": gelu_tanh, "silu": silu, "swish": silu}
# The score functions a T5 model can run: its own q·k (+ bias), under either name (T5 has no 1/sqrt(d) to drop).
T5_SCORES = ("scaled_dot", "dot")


@dataclass
class T5Attention:
    qkv_weight: Any  # (d_model, 3 inner): q, k, v side by side (inner = heads * d_kv); no biases
    out_weight: Any  # (inner, d_model)

    @classmethod
    def from_projections(cls, q, k, v, out) -> T5Attention:
        """(d_model, inner) q, k, v and (inner, d_model) out, laid out for ``x @ w``, as one fused attention."""
        return cls(qkv_weight=np.ascontiguousarray(np.concatenate([q, k, v], axis=1)),  # (d_model, 3 inner)
                   out_weight=np.ascontiguousarray(out))


@dataclass
class T5Layer:
    self_norm: Any  # (d_model,) T5 LayerNorm weight before self-attention
    self_attention: T5Attention
    ff_norm: Any  # (d_model,) before the feed-forward
    ff_in_weight: Any  # (d_model, d_ff), or (d_model, 2 d_ff) when gated: wi_0 (activated) and wi_1 side by side
    ff_out_weight: Any  # (d_ff, d_model)
    cross_norm: Any = None  # decoder only: (d_model,) before cross-attention
    cross_attention: T5Attention | None = None  # decoder only: q from the target, k and v from the encoder


@dataclass
class T5Parameters:
    """A T5 encoder-decoder's parameters on one backend, laid out for ``x @ w``."""

    token_embeddings: Any  # (vocab, d_model): ``shared``, used by both stacks
    encoder_layers: list[T5Layer]
    encoder_final_norm: Any  # (d_model,)
    decoder_layers: list[T5Layer]
    decoder_final_norm: Any  # (d_model,)
    encoder_relative_bias: Any  # (buckets, heads): encoder layer 0's table, shared by every encoder layer
    decoder_relative_bias: Any  # (buckets, heads): decoder layer 0's (causal buckets)
    unembedding: Any | None  # (d_model, vocab); None: tied to token_embeddings and rescaled by d_model**-0.5
    num_heads: int
    head_dim: int  # d_kv
    num_buckets: int
    max_distance: int
    layer_norm_eps: float
    activation: str  # a key of ACTIVATIONS
    gated: bool
    decoder_start_id: int
    scale_decoder_output: bool = True  # multiply the final decoder state by d_model**-0.5 (tied heads)

    @property
    def d_model(self) -> int:
        return self.token_embeddings.shape[-1]

    @property
    def vocab_size(self) -> int:
        return self.token_embeddings.shape[0]

    @property
    def word_embeddings(self):
        return self.token_embeddings

    @property
    def layers(self) -> list[T5Layer]:
        """The encoder's layers (what the head ablation and the layer counts of one-text views refer to)."""
        return self.encoder_layers

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    def kv_head_of(self, head: int) -> int:
        return head


@dataclass
class Seq2SeqForwardResult(ForwardResult):
    """An encoder-decoder pass: ``traces``/``hidden_states`` are the encoder's (as for every family), plus
    the decoder's self-attention and its cross-attention to the source, per layer."""

    decoder_traces: list[AttentionTrace] = field(default_factory=list)  # (heads, n_tgt, n_tgt) weights
    cross_traces: list[AttentionTrace] = field(default_factory=list)  # (heads, n_tgt, n_src) weights
    decoder_hidden_states: list[Any] = field(default_factory=list)  # (n_tgt, d_model) per layer boundary
    encoder_position_bias: Any = None  # (heads, n_src, n_src): added to every encoder layer's scores
    decoder_position_bias: Any = None  # (heads, n_tgt, n_tgt): added to every decoder self-attention's scores


def relative_position_buckets(n_q: int, n_k: int, *, bidirectional: bool, num_buckets: int,
                              max_distance: int) -> np.ndarray:
    """T5's bucket of every (query, key) distance.  -> (n_q, n_k) int64.

    Half the buckets (per direction when bidirectional) are exact distances 0 .. max_exact-1; the rest
    grow logarithmically up to ``max_distance``, beyond which everything shares the last bucket. A
    causal decoder only buckets the past (future keys land in bucket 0 and are masked anyway). The float
    steps are float32, as in transformers, so boundary distances fall in the same bucket.
    """
    relative = np.arange(n_k, dtype=np.int64)[None, :] - np.arange(n_q, dtype=np.int64)[:, None]  # key - query
    buckets = np.zeros((n_q, n_k), dtype=np.int64)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).astype(np.int64) * num_buckets
        distance = np.abs(relative)
    else:
        distance = -np.minimum(relative, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    ratio = np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact)  # log(0) only where is_small
    large = max_exact + (np.log(ratio) / np.float32(math.log(max_distance / max_exact))
                         * np.float32(num_buckets - max_exact)).astype(np.int64)  # truncates, like .to(long)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, distance, large)


def position_bias(table, n_q: int, n_k: int, *, bidirectional: bool, num_buckets: int, max_distance: int):
    """The bias added to every head's scores.  table (buckets, heads) -> (heads, n_q, n_k)."""
    xp = array_namespace(table)
    buckets = relative_position_buckets(n_q, n_k, bidirectional=bidirectional, num_buckets=num_buckets,
                                        max_distance=max_distance)
    values = xp.take(table, xp.asarray(buckets.reshape(-1)), axis=0)  # (n_q * n_k, heads)
    return xp.reshape(matrix_transpose(values), (table.shape[1], n_q, n_k))


def attend(x_q, x_kv, attention: T5Attention, p: T5Parameters, bias, *, mask, score, scale,
           ablated_heads: tuple[int, ...] = (), ablation_mode: str = "zero"):
    """T5 attention with every step kept.  (n_q, d_model), (n_k, d_model) -> (output (n_q, d_model), trace).

    bias (heads, n_q, n_k) or None; scale: T5's own is 1 (the temperature divides it).
    ablated_heads: heads switched off (see :mod:`attnstudio.core.ablation`).
    """
    inner = p.num_heads * p.head_dim
    w = attention.qkv_weight
    if x_kv is x_q:
        qkv = x_q @ w  # (n, 3 inner): one matmul for all three projections
        q, k, v = qkv[:, :inner], qkv[:, inner:2 * inner], qkv[:, 2 * inner:]
    else:  # cross-attention: queries from the target, keys and values from the encoder's output
        q = x_q @ w[:, :inner]
        kv = x_kv @ w[:, inner:]
        k, v = kv[:, :inner], kv[:, inner:]
    q, k, v = split_heads(q, p.num_heads), split_heads(k, p.num_heads), split_heads(v, p.num_heads)  # (h, n, d_kv)
    scores = attention_scores(q, k, score="dot", scale=scale)  # (heads, n_q, n_k): q k^T, no 1/sqrt(d_kv)
    if bias is not None:
        scores = scores + (bias if scale == 1.0 else bias * scale)  # the temperature divides the bias too
    weights = softmax(scores, mask)
    weights, context = ablate_heads(weights, v, ablated_heads, ablation_mode, mask)  # context (heads, n_q, d_kv)
    output = merge_heads(context) @ attention.out_weight  # (n_q, d_model)
    return output, AttentionTrace(q, k, v, scores, weights, context)


def feed_forward(x, layer: T5Layer, p: T5Parameters):
    """wo(act(wi(x))), or wo(act(wi_0(x)) * wi_1(x)) when gated.  (n, d_model) -> (n, d_model)."""
    hidden = x @ layer.ff_in_weight  # (n, d_ff) or (n, 2 d_ff)
    if p.gated:
        d_ff = hidden.shape[-1] // 2
        hidden = ACTIVATIONS[p.activation](hidden[:, :d_ff]) * hidden[:, d_ff:]
    else:
        hidden = ACTIVATIONS[p.activation](hidden)
    return hidden @ layer.ff_out_weight


def forward(p: T5Parameters, input_ids, *, target_ids=None, heads: int | None = None, mask=None,
            score="scaled_dot", scale=None, seed=0, num_layers: int | None = None, pair_ids=None, pair_mask=None,
            ablation: Ablation | None = None) -> Seq2SeqForwardResult:
    """Encode ``input_ids`` (n_src,) and decode ``target_ids`` (n_tgt,) teacher-forced, keeping every attention.

    target_ids: the decoder's inputs, the start token first (None: only the start token). next_logits
    (vocab,): the prediction after the last target token. The model's own masks only (the decoder's causal
    one); scale None is T5's own 1 (a temperature t passes 1/t). ablation: encoder self-attention heads
    switched off.
    """
    del seed, pair_mask
    if heads not in (None, p.num_heads):
        raise InvalidSetting(f"this model has {p.num_heads} heads; its heads cannot be re-split")
    if score not in T5_SCORES:
        raise InvalidSetting(f"T5 computes its own scores (q·k plus a relative position bias); "
                             f"the {score!r} score function does not apply")
    if mask is not None:
        raise InvalidSetting("T5 uses its own masks (the decoder's causal one); choose the mask 'none'")
    if pair_ids is not None:
        raise InvalidSetting("T5 takes a source and a target text, not a second text: use the target")
    check_ablation_fits(ablation, len(p.encoder_layers), p.num_heads)
    if input_ids.shape[0] < 1:
        raise InvalidSetting("the source text has no tokens")
    xp = array_namespace(p.token_embeddings)
    if target_ids is None:
        target_ids = xp.asarray(np.asarray([p.decoder_start_id], dtype=np.int64))
    if num_layers is not None and num_layers < len(p.encoder_layers):
        raise InvalidSetting("an encoder-decoder model runs all its layers")
    scale = 1.0 if scale is None else float(scale)
    n_src, n_tgt = input_ids.shape[0], target_ids.shape[0]
    buckets = {"num_buckets": p.num_buckets, "max_distance": p.max_distance}

    # encoder: bidirectional self-attention with layer 0's bias in every layer
    encoder_bias = position_bias(p.encoder_relative_bias, n_src, n_src, bidirectional=True, **buckets)
    x = xp.take(p.token_embeddings, input_ids, axis=0)  # (n_src, d_model)
    hidden_states, traces = [x], []
    for index, layer in enumerate(p.encoder_layers):
        normed = rms_norm(x, layer.self_norm, p.layer_norm_eps)
        attended, trace = attend(normed, normed, layer.self_attention, p, encoder_bias, mask=None, score=score,
                                 scale=scale, ablated_heads=ablation.heads_in(index) if ablation else (),
                                 ablation_mode=ablation.mode if ablation else "zero")
        x = x + attended
        x = x + feed_forward(rms_norm(x, layer.ff_norm, p.layer_norm_eps), layer, p)
        hidden_states.append(x)
        traces.append(trace)
    encoded = rms_norm(x, p.encoder_final_norm, p.layer_norm_eps)  # (n_src, d_model)
    hidden_states[-1] = encoded

    # decoder: causal self-attention (its own bias), cross-attention to ``encoded``, feed-forward
    decoder_bias = position_bias(p.decoder_relative_bias, n_tgt, n_tgt, bidirectional=False, **buckets)
    causal = causal_mask(n_tgt, n_tgt, xp)  # (n_tgt, n_tgt)
    y = xp.take(p.token_embeddings, target_ids, axis=0)  # (n_tgt, d_model)
    decoder_states, decoder_traces, cross_traces = [y], [], []
    for layer in p.decoder_layers:
        normed = rms_norm(y, layer.self_norm, p.layer_norm_eps)
        attended, trace = attend(normed, normed, layer.self_attention, p, decoder_bias, mask=causal, score=score,
                                 scale=scale)
        y = y + attended
        attended, cross = attend(rms_norm(y, layer.cross_norm, p.layer_norm_eps), encoded, layer.cross_attention, p,
                                 None, mask=None, score=score, scale=scale)
        y = y + attended
        y = y + feed_forward(rms_norm(y, layer.ff_norm, p.layer_norm_eps), layer, p)
        decoder_states.append(y)
        decoder_traces.append(trace)
        cross_traces.append(cross)
    y = rms_norm(y, p.decoder_final_norm, p.layer_norm_eps)
    decoder_states[-1] = y
    return Seq2SeqForwardResult(traces, hidden_states, unembed(p, y[-1, ...]), decoder_traces=decoder_traces,
                                cross_traces=cross_traces, decoder_hidden_states=decoder_states,
                                encoder_position_bias=encoder_bias, decoder_position_bias=decoder_bias)


def unembed(p: T5Parameters, y):
    """The final decoder state (d_model,) -> logits (vocab,): T5's tied head rescales by d_model**-0.5 first."""
    if p.scale_decoder_output:
        y = y * (p.d_model ** -0.5)
    if p.unembedding is not None:
        return y @ p.unembedding
    return p.token_embeddings @ y
