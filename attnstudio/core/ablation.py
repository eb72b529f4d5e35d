"""Switching heads off: zero a head's output, or replace its pattern with uniform attention.

An :class:`Ablation` names (layer, head) pairs and a mode. Every family's attention step
calls :func:`ablate_heads` between the softmax and the weighted sum of values, so the
effect flows downstream through the residual stream into later layers and the output.
The trace keeps what the layer actually used: uniform weights for "uniform", a zero
context for "zero".
"""
from __future__ import annotations

from dataclasses import dataclass

from attnstudio.core.backend import array_namespace
from attnstudio.errors import InvalidSetting

ABLATION_MODES = ("zero", "uniform")
MAX_ABLATED_HEADS = 4096


@dataclass(frozen=True)
class Ablation:
    """Heads to switch off, as sorted unique (layer, head) pairs, and how."""

    heads: tuple[tuple[int, int], ...] = ()
    mode: str = "zero"

    def __post_init__(self):
        if self.mode not in ABLATION_MODES:
            raise InvalidSetting(f"unknown ablation mode {self.mode!r}; choose one of {', '.join(ABLATION_MODES)}")
        if not isinstance(self.heads, (tuple, list)) or len(self.heads) > MAX_ABLATED_HEADS:
            raise InvalidSetting(f"ablated heads must be a list of at most {MAX_ABLATED_HEADS} (layer, head) pairs")
        pairs = set()
        for pair in self.heads:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(
                    isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in pair):
                raise InvalidSetting(f"an ablated head must be a (layer, head) pair of integers >= 0, got {pair!r}")
            pairs.add((int(pair[0]), int(pair[1])))
        object.__setattr__(self, "heads", tuple(sorted(pairs)))

    def __bool__(self) -> bool:
        return bool(self.heads)

    def heads_in(self, layer: int) -> tuple[int, ...]:
        """The heads of ``layer`` to switch off."""
        return tuple(head for pair_layer, head in self.heads if pair_layer == layer)

    def describe(self) -> str:
        """A caption fragment, layers and heads counted from 1 as the app shows them: 'zeroed L1·H4, L3·H2'."""
        if not self.heads:
            return "none"
        verb = "zeroed" if self.mode == "zero" else "uniform"
        return f"{verb} " + ", ".join(f"L{layer + 1}·H{head + 1}" for layer, head in self.heads)


def uniform_pattern(weights, mask=None):
    """Uniform attention over the keys each query may see.  (heads, n_q, n_k) -> same shape.

    A query with no visible key gets a zero row, as the softmax gives it.
    """
    xp = array_namespace(weights)
    if mask is None:
        return xp.ones_like(weights) / weights.shape[-1]
    allowed = xp.where(xp.broadcast_to(mask, weights.shape), xp.ones_like(weights), xp.zeros_like(weights))
    counts = xp.sum(allowed, axis=-1, keepdims=True)
    return allowed / xp.where(counts > 0, counts, xp.ones_like(counts))


def ablate_heads(weights, values, heads: tuple[int, ...], mode: str, mask=None):
    """Weights and context of one layer with ``heads`` switched off.

    weights (heads, n_q, n_k), values (heads, n_k, d_v) -> (weights, context (heads, n_q, d_v)).
    """
    xp = array_namespace(weights, values)
    if not heads:
        return weights, weights @ values
    off = [False] * weights.shape[0]
    for head in heads:
        if head >= weights.shape[0]:
            raise InvalidSetting(f"cannot ablate head {head + 1}: the layer has {weights.shape[0]} heads")
        off[head] = True
    switched_off = xp.reshape(xp.asarray(off), (weights.shape[0], 1, 1))  # (heads, 1, 1)
    if mode == "uniform":
        weights = xp.where(switched_off, uniform_pattern(weights, mask), weights)
        return weights, weights @ values
    context = weights @ values  # (heads, n_q, d_v)
    return weights, xp.where(switched_off, xp.zeros_like(context), context)


def check_ablation_fits(ablation: Ablation | None, layers: int, heads: int) -> None:
    """InvalidSetting naming the first ablated head the model does not have."""
    for layer, head in (ablation.heads if ablation else ()):
        if layer >= layers or head >= heads:
            raise InvalidSetting(f"cannot ablate L{layer + 1}·H{head + 1}: the model has {layers} layers of {heads} "
                                 "heads")
