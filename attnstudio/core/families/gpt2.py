"""The GPT-2 decoder family: learned positions, pre-LayerNorm, fused ``c_attn``, GELU (tanh), tied head.

Follows Hugging Face's ``modeling_gpt2.py`` (eager attention, float32): token + position
embeddings; per layer, LayerNorm -> causal multi-head attention (one fused q/k/v
projection with bias) -> residual, LayerNorm -> GELU-tanh MLP -> residual; a final
LayerNorm and the unembedding tied to the token embeddings. Written with ``xp`` so NumPy
and CuPy share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from attnstudio.core.ablation import Ablation, ablate_heads
from attnstudio.core.backend import array_namespace, concat, matrix_transpose
from attnstudio.core.families.llama import check_decoder_input, decoder_options
from attnstudio.core.kernels import attention_scores, softmax
from attnstudio.core.transformer import AttentionTrace, ForwardResult, layer_norm, merge_heads, split_heads
from attnstudio.errors import InvalidSetting


@dataclass
class Gpt2Layer:
    attention_norm: tuple[Any, Any]  # ln_1 (weight, bias), each (d_model,)
    qkv_weight: Any  # (d_model, 3 d_model): c_attn, q, k, v side by side (Conv1D keeps x @ w)
    qkv_bias: Any  # (3 d_model,)
    attention_out_weight: Any  # (d_model, d_model): attn.c_proj
    attention_out_bias: Any  # (d_model,)
    mlp_norm: tuple[Any, Any]  # ln_2
    up_weight: Any  # (d_model, d_ff): mlp.c_fc
    up_bias: Any  # (d_ff,)
    down_weight: Any  # (d_ff, d_model): mlp.c_proj
    down_bias: Any  # (d_model,)


@dataclass
class Gpt2Parameters:
    """A GPT-2 decoder's parameters on one backend, laid out for ``x @ w``."""

    token_embeddings: Any  # (vocab, d_model): wte, also the unembedding
    position_embeddings: Any  # (context, d_model): wpe
    layers: list[Gpt2Layer]
    final_norm: tuple[Any, Any]  # ln_f
    num_heads: int
    layer_norm_eps: float

    @property
    def d_model(self) -> int:
        return self.token_embeddings.shape[-1]

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads  # every head has its own keys and values

    @property
    def vocab_size(self) -> int:
        return self.token_embeddings.shape[0]

    @property
    def max_positions(self) -> int:
        return self.position_embeddings.shape[0]

    @property
    def word_embeddings(self):
        return self.token_embeddings

    def kv_head_of(self, head: int) -> int:
        return head


def gelu_tanh(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    xp = array_namespace(x)
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def attend(x, layer: Gpt2Layer, p: Gpt2Parameters, *, mask, score, scale, seed,
           ablated_heads: tuple[int, ...] = (), ablation_mode: str = "zero"):
    """Causal multi-head self-attention with every step kept.  (n, d_model) -> (output (n, d_model), trace).

    ablated_heads: heads switched off in this layer (see :mod:`attnstudio.core.ablation`).
    """
    d = p.d_model
    qkv = x @ layer.qkv_weight + layer.qkv_bias  # (n, 3 d_model)
    q, k, v = (split_heads(qkv[:, i * d:(i + 1) * d], p.num_heads) for i in range(3))  # (heads, n, head_dim)
    scores = attention_scores(q, k, score=score, scale=scale, seed=seed)  # (heads, n, n)
    weights = softmax(scores, mask)
    weights, context = ablate_heads(weights, v, ablated_heads, ablation_mode, mask)  # context (heads, n, head_dim)
    output = merge_heads(context) @ layer.attention_out_weight + layer.attention_out_bias  # (n, d_model)
    return output, AttentionTrace(q, k, v, scores, weights, context)


def forward(p: Gpt2Parameters, input_ids, *, heads: int | None = None, mask=None, score="scaled_dot", scale=None,
            seed=0, num_layers: int | None = None, pair_ids=None, pair_mask=None,
            ablation: Ablation | None = None) -> ForwardResult:
    """Run GPT-2 on ``input_ids`` (n,), keeping every layer's attention (see llama.forward for the contract)."""
    del pair_mask
    if heads not in (None, p.num_heads):
        raise InvalidSetting(f"this model has {p.num_heads} heads; its heads cannot be re-split")
    n, num_layers = check_decoder_input(p, input_ids, pair_ids=pair_ids, num_layers=num_layers, ablation=ablation)
    if n > p.max_positions:
        raise InvalidSetting(f"this model has {p.max_positions} positions; the text has {n} tokens")
    total_layers = len(p.layers)
    xp = array_namespace(p.token_embeddings)
    options = decoder_options(p, n, xp, mask=mask, score=score, scale=scale, seed=seed)

    x = xp.take(p.token_embeddings, input_ids, axis=0) + p.position_embeddings[:n]  # (n, d_model)
    hidden_states, traces = [x], []
    for index, layer in enumerate(p.layers[:num_layers]):
        switched_off = ablation.heads_in(index) if ablation else ()
        attended, trace = attend(layer_norm(x, layer.attention_norm, p.layer_norm_eps), layer, p,
                                 ablated_heads=switched_off, ablation_mode=ablation.mode if ablation else "zero",
                                 **options)
        x = x + attended
        hidden = gelu_tanh(layer_norm(x, layer.mlp_norm, p.layer_norm_eps) @ layer.up_weight + layer.up_bias)
        x = x + hidden @ layer.down_weight + layer.down_bias
        hidden_states.append(x)
        traces.append(trace)
    next_logits = None
    if num_layers == total_layers:
        x = layer_norm(x, p.final_norm, p.layer_norm_eps)
        hidden_states[-1] = x
        next_logits = p.token_embeddings @ x[-1, ...]  # (vocab,)
    return ForwardResult(traces, hidden_states, next_logits)


def logit_lens(p: Gpt2Parameters, hidden_states: list, position: int):
    """Each layer's prediction after token ``position``: ln_f + tied unembedding.  -> (L, vocab)."""
    rows = [layer_norm(h[position:position + 1, ...], p.final_norm, p.layer_norm_eps) for h in hidden_states[1:-1]]
    rows.append(hidden_states[-1][position:position + 1, ...])
    return concat(rows, axis=0) @ matrix_transpose(p.token_embeddings)  # (L, vocab)
