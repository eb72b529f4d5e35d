"""Summaries of attention weights: entropy and rollout across layers."""
from __future__ import annotations

from attnstudio.core.backend import array_namespace


def row_entropy(weights):
    """Shannon entropy (nats) of each query's distribution.  (..., n_q, n_k) -> (..., n_q).

    Zero weights contribute nothing (0 log 0 = 0); fully masked rows have entropy 0.
    """
    xp = array_namespace(weights)
    logs = xp.log(xp.where(weights > 0, weights, xp.ones_like(weights)))
    return -xp.sum(weights * logs, axis=-1)


def head_entropy(weights):
    """Mean row entropy per head.  (..., heads, n_q, n_k) -> (..., heads)."""
    xp = array_namespace(weights)
    return xp.mean(row_entropy(weights), axis=-1)


def residual_attention(attentions, residual: float = 0.5):
    """The per-layer graph rollout and flow share: (layers, heads, n, n) -> (layers, n, n).

    Each layer's head-averaged weights are mixed with the identity (the residual connection) and each row is
    renormalised to sum to 1 (Abnar & Zuidema's ``0.5 * A + 0.5 * I``). A fully masked row becomes the identity's.
    """
    xp = array_namespace(attentions)
    _, _, n, n_k = attentions.shape
    if n != n_k:
        raise ValueError("rollout and flow need self-attention (square weights)")
    identity = xp.eye(n, dtype=attentions.dtype)
    mixed = (1.0 - residual) * xp.mean(attentions, axis=1) + residual * identity  # (layers, n, n)
    return mixed / xp.sum(mixed, axis=-1, keepdims=True)


def attention_rollout(attentions, residual: float = 0.5):
    """Abnar & Zuidema's rollout: how much each output token draws on each input token through all layers.

    attentions (layers, heads, n, n) -> (n, n). The layers of :func:`residual_attention` multiplied from the
    first layer up.
    """
    xp = array_namespace(attentions)
    mixed = residual_attention(attentions, residual)  # (layers, n, n)
    rollout = xp.eye(mixed.shape[-1], dtype=attentions.dtype)
    for layer in range(mixed.shape[0]):
        rollout = mixed[layer] @ rollout
    return rollout
