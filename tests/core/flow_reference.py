"""Two independent attention flows to check attnstudio.core.flow against (the tests and benchmarks/bench_flow.py).

- ``reference_flow``: Abnar & Zuidema's own construction, real-valued capacities, one networkx Edmonds–Karp
  max-flow per (output, input) pair (their code calls ``nx.maximum_flow_value(..., flow_func=edmonds_karp)``).
- ``scipy_flow``: the same integer network core.flow solves, solved by SciPy's Dinic
  (``scipy.sparse.csgraph.maximum_flow``): an exact solver must find the very same integers.

networkx and SciPy are in the test extra only; the app needs neither.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from attnstudio.core.flow import CAPACITY_SCALE, FlowGraph, build_flow_graph
from attnstudio.core.metrics import residual_attention


def reference_graph(attentions: np.ndarray, residual: float = 0.5) -> tuple[nx.DiGraph, int, int]:
    """(layers, heads, n, n) weights -> (graph, layers, n): nodes (layer, token), an edge (l + 1, i) -> (l, j) of
    capacity mixed[l, i, j] wherever that is positive (rollout's residual-mixed, renormalised weights)."""
    mixed = np.asarray(residual_attention(np.asarray(attentions, dtype=np.float64), residual))  # (L, n, n)
    layers, n, _ = mixed.shape
    graph = nx.DiGraph()
    graph.add_nodes_from((layer, token) for layer in range(layers + 1) for token in range(n))
    for layer in range(layers):
        for above in range(n):
            for below in range(n):
                if mixed[layer, above, below] > 0:
                    graph.add_edge((layer + 1, above), (layer, below), capacity=float(mixed[layer, above, below]))
    return graph, layers, n


def reference_flow(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """(layers, heads, n, n) -> (n, n): networkx Edmonds–Karp max-flow from (L, i) to (0, j), real-valued."""
    graph, layers, n = reference_graph(attentions, residual)
    if layers == 0:  # no layers: each token is its own input
        return np.eye(n)
    flow = np.zeros((n, n))
    for output in range(n):
        for source_input in range(n):
            flow[output, source_input] = nx.maximum_flow_value(graph, (layers, output), (0, source_input),
                                                               flow_func=nx.algorithms.flow.edmonds_karp)
    return flow


def scipy_matrix(graph: FlowGraph) -> csr_matrix:
    """core.flow's integer network as the int32 CSR matrix SciPy's maximum_flow takes."""
    return csr_matrix((graph.capacities.astype(np.int32), (graph.tails, graph.heads)), shape=(graph.nodes,) * 2)


def scipy_flow(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """(layers, heads, n, n) -> (n, n): SciPy's Dinic on core.flow's integer network, in units / CAPACITY_SCALE
    (so equal integers give equal floats)."""
    graph = build_flow_graph(attentions, residual)
    matrix = scipy_matrix(graph)  # csr_matrix, not csr_array: maximum_flow converts an array on every call
    n, top = graph.tokens, graph.layers
    if top == 0:
        return np.eye(n)
    flow = np.zeros((n, n))
    for output in range(n):
        for source_input in np.flatnonzero(graph.reachable[output]):
            units = maximum_flow(matrix, graph.node(top, output), graph.node(0, int(source_input)),
                                 method="dinic").flow_value
            flow[output, source_input] = units / CAPACITY_SCALE
    return flow
