"""Attention flow (Abnar & Zuidema, 2020): how much of each output token can flow back to each input token.

The graph is rollout's (:func:`attnstudio.core.metrics.residual_attention`): a node for every token at every
layer boundary, 0 (the inputs) to L (the outputs), and an edge from token i above layer l to token j below it
whose capacity is that layer's head-averaged weight mixed 50/50 with the residual path, rows renormalised::

    mixed = residual_attention(attentions)        # (L, n, n), rows sum to 1
    capacity[(l + 1, i) -> (l, j)] = mixed[l, i, j]

``flow[i, j]`` is the maximum flow from output node (L, i) to input node (0, j): one max-flow problem per
(output, input) pair, solved exactly by Dinic's algorithm in C (``attnstudio/core/_maxflow.c``, built with the
package) on integer capacities, on one residual network built once (only the source and the sink change).

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
from attnstudio.errors import BackendUnavailable, InvalidSetting

TOLERANCE = 1e-4  # every flow value is within this of the real-valued maximum flow
# Weights become integers of this many units per 1.0. The solver counts in int64; the scale fits int32 so that
# scipy.sparse.csgraph.maximum_flow (int32 only) solves the very same integer network: the tests compare the two.
CAPACITY_SCALE = 2**31 - 2**24
FLOW_TOKEN_LIMIT = 128  # beyond this the n² max-flow problems stop being interactive (64 tokens: ~3 s)


class FlowCancelled(Exception):
    """The caller asked the flow to stop before it finished."""


@dataclass(frozen=True)
class FlowGraph:
    """The layered flow network with integer capacities, built once and shared by every max-flow problem.

    Node of (layer l, token k) = l * n + k, for l = 0 (the inputs) .. L (the outputs). The edges, and the same
    network as the residual arcs the solver walks: each edge gives a forward arc (its capacity) and a backward
    arc (0), grouped by the node they leave, forward arcs first.
    """

    tails: np.ndarray  # (edges,) int64: edge e runs from node tails[e] (layer l + 1) ...
    heads: np.ndarray  # (edges,) int64: ... to node heads[e] (layer l)
    capacities: np.ndarray  # (edges,) int64, in [1, CAPACITY_SCALE]: round(mixed weight * CAPACITY_SCALE)
    arc_offsets: np.ndarray  # (nodes + 1,) int64: the arcs leaving node v are arc_offsets[v] .. arc_offsets[v+1]-1
    arc_heads: np.ndarray  # (2 * edges,) int64: the node each arc enters
    arc_reverse: np.ndarray  # (2 * edges,) int64: the partner of each arc
    arc_capacities: np.ndarray  # (2 * edges,) int64: an edge's capacity on its forward arc, 0 on its backward one
    network: object  # attnstudio.core._maxflow.Network: the solver's checked copy of the four arc arrays
    layers: int
    tokens: int
    reachable: np.ndarray  # (n, n) bool: a path joins output i to input j (else flow[i, j] is exactly 0)
    error_bound: float  # |flow - real-valued flow| <= this for every pair

    @property
    def nodes(self) -> int:
        return (self.layers + 1) * self.tokens

    def node(self, layer: int, token: int) -> int:
        return layer * self.tokens + token

    def max_flow(self, source: int, sink: int) -> int:
        """The exact maximum flow from node ``source`` to node ``sink``, in capacity units (an int)."""
        return self.network.max_flow(source, sink)


def _solver():
    """The compiled max-flow (attnstudio/core/_maxflow.c), or one clear error where it was never built."""
    try:
        from attnstudio.core import _maxflow  # noqa: PLC0415 - lazily: a checkout without it still imports
    except ImportError as error:
        raise BackendUnavailable("attention flow needs attnstudio's compiled max-flow (attnstudio/core/_maxflow.c): "
                                 "build it with `pip install -e .` or `python setup.py build_ext --inplace`") from error
    return _maxflow


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
    tails, heads, capacities = (layer + 1) * n + above, layer * n + below, units[layer, above, below]
    # the residual network: arc e is edge e forward, arc edges + e the same edge backward
    arc_tails = np.concatenate([tails, heads])  # (2E,)
    order = np.argsort(arc_tails, kind="stable")  # group arcs by the node they leave, forward arcs first
    position = np.empty_like(order)
    position[order] = np.arange(order.size)  # where each arc lands
    partner = np.concatenate([np.arange(edges) + edges, np.arange(edges)])  # (2E,) the other arc of the edge
    nodes = (layers + 1) * n
    arcs = {"offsets": np.concatenate([[0], np.cumsum(np.bincount(arc_tails, minlength=nodes))]).astype(np.int64),
            "heads": np.ascontiguousarray(np.concatenate([heads, tails])[order]),
            "reverse": np.ascontiguousarray(position[partner[order]]),
            "capacity": np.ascontiguousarray(np.concatenate([capacities, np.zeros_like(capacities)])[order])}
    return FlowGraph(tails=tails, heads=heads, capacities=capacities, arc_offsets=arcs["offsets"],
                     arc_heads=arcs["heads"], arc_reverse=arcs["reverse"], arc_capacities=arcs["capacity"],
                     network=_solver().Network(**arcs), layers=layers, tokens=n,
                     reachable=reachable_pairs(units > 0), error_bound=error_bound)


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
    integers of 1 / CAPACITY_SCALE (about 2.1e9 units per 1.0), each integer max-flow is exact, and the rounding error
    of the whole graph, (edges / 2) / CAPACITY_SCALE, is checked to stay below it. Values lie in [0, 1] and
    are at least the rollout; rows are not normalised (see :func:`flow_shares`).

    progress(done, total) is called after each output token's row; cancelled() is polled between max-flow
    problems and raises FlowCancelled when it returns True. Raises InvalidSetting for too many tokens.
    """
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
            flow[output, source_input] = graph.max_flow(source, graph.node(0, int(source_input))) / CAPACITY_SCALE
        if progress is not None:
            progress(output + 1, n)
    return flow


def flow_shares(flow: np.ndarray) -> np.ndarray:
    """Each output token's flows as shares that sum to 1, as Abnar & Zuidema draw them.  (n, n) -> (n, n).

    Rows with no flow stay zero.
    """
    totals = flow.sum(axis=-1, keepdims=True)  # (n, 1)
    return np.divide(flow, totals, out=np.zeros_like(flow), where=totals > 0)
