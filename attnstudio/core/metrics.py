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


def attention_rollout(attentions, residual: float = 0.5):
    """Abnar & Zuidema's rollout: how much each output token draws on each input token through all layers.

    attentions (layers, heads, n, n) -> (n, n). Each layer's head-averaged weights are mixed with the
    identity (the residual connection), renormalised, and multiplied from the first layer up.
    """
    xp = array_namespace(attentions)
    layers, _, n, n_k = attentions.shape
    if n != n_k:
        raise ValueError("rollout needs self-attention (square weights)")
    identity = xp.eye(n, dtype=attentions.dtype)
    rollout = identity
    for layer in range(layers):
        mixed = (1.0 - residual) * xp.mean(attentions[layer], axis=0) + residual * identity
        mixed = mixed / xp.sum(mixed, axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout
