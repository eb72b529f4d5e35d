"""Attention flow (Abnar & Zuidema, 2020): how much of each output token can flow back to each input token.

The graph is rollout's (:func:`attnstudio.core.metrics.residual_attention`): a node for every token at every
layer boundary, 0 (the inputs) to L (the outputs), and an edge from token i above layer l to token j below it
whose capacity is that layer's head-averaged weight mixed 50/50 with the residual path, rows renormalised::

    mixed = residual_attention(attentions)        # (L, n, n), rows sum to 1
    capacity[(l + 1, i) -> (l, j)] = mixed[l, i, j]

``flow[i, j]`` is the maximum flow from output node (L, i) to input node (0, j): one max-flow problem per
(output, input) pair, solved by Dinic's algorithm in ``scipy.sparse.csgraph.maximum_flow`` on one graph built
once (only the source and the sink change between problems).

What a super-sink gives, and what it does not. Joining every input to one super-sink and solving once per
output token gives the maximum flow into the *set* of inputs, which is exactly 1 here: the source's
capacities sum to 1, and rollout itself is a feasible flow of value 1 (a node at layer l receives a rollout
partial sum <= 1 and forwards that fraction of each of its edges, within capacity). It does not give the
per-input values: a maximum flow into the super-sink can be split among the inputs in many ways, and the
per-input maxima ``flow[i, j]`` compete for the same edges, so they sum to more than 1 (tests/core/test_flow.py
shows a graph where they do). Two exact facts are used instead: rollout is a feasible flow, so
``flow >= rollout`` elementwise; and ``flow[i, j] == 0`` exactly when no path joins (L, i) to (0, j) (a causal
model's later tokens, a sliding window's far tokens), so those pairs are never solved.

Causal (decoder) models: their weights are zero above the diagonal, so the graph has no edge to a later
token and ``flow[i, j] == 0`` for j > i; flow there means "through earlier tokens only", as the model reads.
Cross-attention has no such graph (its keys are another text, not the layer below) and is refused.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from attnstudio.core.metrics import residual_attention
from attnstudio.errors import InvalidSetting

TOLERANCE = 1e-4  # every flow value is within this of the real-valued maximum flow
CAPACITY_SCALE = 2**31 - 2**24  # weights become integers of this many units per 1.0; scipy's Dinic takes int32
FLOW_TOKEN_LIMIT = 128  # beyond this the n² max-flow problems stop being interactive (64 tokens: ~3 s)


class FlowCancelled(Exception):
    """The caller asked the flow to stop before it finished."""


@dataclass(frozen=True)
class FlowGraph:
    """The layered flow network as scipy's integer CSR matrix, built once and shared by every max-flow."""

    capacities: object  # scipy.sparse.csr_matrix, ((L + 1) * n, (L + 1) * n) int32; node of (layer l, token k) = l*n+k
    layers: int
    tokens: int
    reachable: np.ndarray  # (n, n) bool: a path joins output i to input j (else flow[i, j] is exactly 0)
    error_bound: float  # |flow - real-valued flow| <= this for every pair

    def node(self, layer: int, token: int) -> int:
        return layer * self.tokens + token


def check_flow_input(attentions: np.ndarray, *, cross_attention: bool = False) -> None:
    """Raise InvalidSetting (one sentence) unless flow is defined and tractable for (layers, heads, n, n) weights."""
    if cross_attention or attentions.ndim != 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise InvalidSetting("attention flow follows self-attention through the layers; it is not defined for "
                             "cross-attention, whose keys come from another text")
    n = attentions.shape[-1]
    if n > FLOW_TOKEN_LIMIT:
        raise InvalidSetting(f"attention flow takes at most {FLOW_TOKEN_LIMIT} tokens (this text has {n}): "
                             f"it solves one max-flow problem per pair of tokens")


def build_flow_graph(attentions: np.ndarray, residual: float = 0.5) -> FlowGraph:
    """The flow network of (layers, heads, n, n) weights, with integer capacities (see :data:`CAPACITY_SCALE`).

    Each capacity is rounded to the nearest 1 / CAPACITY_SCALE, so any cut, hence the minimum cut, moves by at
    most (edges / 2) / CAPACITY_SCALE; that bound is ``error_bound`` and is refused above :data:`TOLERANCE`.
    """
    # csr_matrix, not csr_array: maximum_flow converts an array to a matrix and back on every call (2x the time)
    from scipy.sparse import csr_matrix  # noqa: PLC0415 - lazily: only the flow needs scipy

    attentions = np.asarray(attentions, dtype=np.float64)
    mixed = np.asarray(residual_attention(attentions, residual))  # (L, n, n), rows sum to 1
    layers, n, _ = mixed.shape
    units = np.rint(mixed * CAPACITY_SCALE).astype(np.int64)  # (L, n, n)
    layer, above, below = np.nonzero(units)  # an edge (layer + 1, above) -> (layer, below)
    edges = layer.size
    error_bound = edges / 2 / CAPACITY_SCALE
    if error_bound > TOLERANCE:
        raise InvalidSetting(f"attention flow on {edges} edges cannot keep its {TOLERANCE:g} accuracy: "
                             f"use fewer tokens")
    size = (layers + 1) * n
    reachable = reachable_pairs(units > 0)
    capacities = csr_matrix((units[layer, above, below].astype(np.int32), ((layer + 1) * n + above, layer * n + below)),
                           shape=(size, size))
    return FlowGraph(capacities, layers, n, reachable, error_bound)


def reachable_pairs(edges: np.ndarray) -> np.ndarray:
    """(L, n, n) bool edges -> (n_out, n_in) bool: a path joins output i to input j (a boolean rollout, which
    cannot underflow). Where it is False the flow is exactly 0: a causal model's later tokens, say."""
    reachable = np.eye(edges.shape[-1], dtype=bool)
    for step in edges:  # from the first layer up, as rollout multiplies
        reachable = (step.astype(np.int64) @ reachable.astype(np.int64)) > 0
    return reachable


def flow_reachable(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """(layers, heads, n, n) weights -> (n, n) bool: the pairs with a path between them (see reachable_pairs)."""
    return reachable_pairs(np.asarray(residual_attention(np.asarray(attentions, dtype=np.float64), residual)) > 0)


def attention_flow(attentions: np.ndarray, *, residual: float = 0.5,
                   progress: Callable[[int, int], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """Maximum flow from every output token to every input token.  (layers, heads, n, n) -> (n, n) float64.

    Each value is within :data:`TOLERANCE` (1e-4) of the real-valued maximum flow: capacities are scaled to
    integers of 1 / CAPACITY_SCALE (about 2.1e9 units per 1.0, as scipy's Dinic needs) and the rounding error
    of the whole graph, (edges / 2) / CAPACITY_SCALE, is checked to stay below it. Values lie in [0, 1] and
    are at least the rollout; rows are not normalised (see :func:`flow_shares`).

    progress(done, total) is called after each output token's row; cancelled() is polled between max-flow
    problems and raises FlowCancelled when it returns True. Raises InvalidSetting for too many tokens.
    """
    from scipy.sparse.csgraph import maximum_flow  # noqa: PLC0415 - lazily, and only the csgraph part of scipy

    attentions = np.asarray(attentions)
    check_flow_input(attentions)
    graph = build_flow_graph(attentions, residual)
    n, top = graph.tokens, graph.layers
    flow = np.zeros((n, n), dtype=np.float64)
    for output in range(n):
        source = graph.node(top, output)
        for source_input in np.flatnonzero(graph.reachable[output]):
            if cancelled is not None and cancelled():
                raise FlowCancelled
            if top == 0:  # no layers: each token is its own input
                flow[output, source_input] = 1.0
                continue
            value = maximum_flow(graph.capacities, source, graph.node(0, int(source_input)), method="dinic").flow_value
            flow[output, source_input] = value / CAPACITY_SCALE
        if progress is not None:
            progress(output + 1, n)
    return flow


def flow_shares(flow: np.ndarray) -> np.ndarray:
    """Each output token's flows as shares that sum to 1, as Abnar & Zuidema draw them.  (n, n) -> (n, n).

    Rows with no flow stay zero.
    """
    totals = flow.sum(axis=-1, keepdims=True)  # (n, 1)
    return np.divide(flow, totals, out=np.zeros_like(flow), where=totals > 0)
