"""Attention flow against a straightforward networkx reference, SciPy's Dinic on the same integer network (equal
integers), a 2-layer example worked by hand, and the facts core/flow.py relies on (what a super-sink does and
does not give, flow >= rollout, causal zeros)."""
from __future__ import annotations

import subprocess
import sys

import networkx as nx  # the test extra (the reference); flow itself never needs it
import numpy as np
import pytest

from attnstudio.core.flow import (
    CAPACITY_SCALE,
    FLOW_TOKEN_LIMIT,
    TOLERANCE,
    FlowCancelled,
    _solver,
    attention_flow,
    build_flow_graph,
    flow_shares,
)
from attnstudio.core.masks import causal_mask
from attnstudio.core.metrics import attention_rollout, residual_attention
from attnstudio.errors import BackendUnavailable, InvalidSetting
from tests.core.flow_reference import reference_flow, reference_graph, scipy_flow

# The hand-built example: 3 tokens, 2 layers, one head. mixed = 0.5 * A + 0.5 * I (rows already sum to 1).
HAND_ATTENTIONS = np.array([
    [[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]],  # layer 1: mixed [[1,0,0],[.5,.5,0],[.25,.25,.5]]
    [[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]],  # layer 2: mixed [[.5,.5,0],[0,.5,.5],[.25,.25,.5]]
], dtype=np.float32)
# With two layers every path is output i -> middle k -> input j and paths through different k share no edge,
# so flow[i, j] = sum_k min(mixed2[i, k], mixed1[k, j]), summed by hand:
HAND_FLOW = np.array([[1.0, 0.5, 0.0],     # .5+.5+0,  0+.5+0,  0+0+0
                      [0.75, 0.75, 0.5],   # 0+.5+.25, 0+.5+.25, 0+0+.5
                      [0.75, 0.5, 0.5]])   # .25+.25+.25, 0+.25+.25, 0+0+.5
HAND_SHARES = np.array([[2 / 3, 1 / 3, 0.0], [0.375, 0.375, 0.25], [3 / 7, 2 / 7, 2 / 7]])
HAND_ROLLOUT = np.array([[0.75, 0.25, 0.0], [0.375, 0.375, 0.25], [0.5, 0.25, 0.25]])


def random_attentions(rng, layers: int, heads: int, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    scores = rng.normal(scale=2.0, size=(layers, heads, n, n))
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_hand_built_two_layer_example():
    assert np.allclose(residual_attention(HAND_ATTENTIONS.astype(np.float64))[1],
                       [[0.5, 0.5, 0], [0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    flow = attention_flow(HAND_ATTENTIONS)
    assert np.abs(flow - HAND_FLOW).max() <= TOLERANCE
    assert np.abs(flow_shares(flow) - HAND_SHARES).max() <= 2 * TOLERANCE
    assert np.allclose(attention_rollout(HAND_ATTENTIONS), HAND_ROLLOUT)
    assert np.abs(reference_flow(HAND_ATTENTIONS) - HAND_FLOW).max() < 1e-12  # the reference agrees too


@pytest.mark.parametrize("seed", range(6))
def test_matches_networkx_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    layers, heads, n = 1 + seed % 3, 1 + seed % 2, 3 + seed
    attentions = random_attentions(rng, layers, heads, n)
    ours, reference = attention_flow(attentions), reference_flow(attentions)
    assert np.abs(ours - reference).max() <= TOLERANCE
    assert np.abs(ours - reference).max() <= build_flow_graph(attentions).error_bound + 1e-12


def test_matches_networkx_with_a_causal_mask_and_causal_zeros_are_exact():
    rng = np.random.default_rng(7)
    n = 6
    attentions = random_attentions(rng, 3, 2, n, mask=causal_mask(n, n))
    ours = attention_flow(attentions)
    assert np.abs(ours - reference_flow(attentions)).max() <= TOLERANCE
    assert np.all(ours[np.triu_indices(n, 1)] == 0.0)  # only earlier tokens: not one unit flows forward
    assert np.all(np.diag(ours) > 0)


def test_one_layer_flow_is_the_layer_itself():
    attentions = random_attentions(np.random.default_rng(3), 1, 4, 5)
    mixed = np.asarray(residual_attention(attentions.astype(np.float64)))[0]
    assert np.abs(attention_flow(attentions) - mixed).max() <= 0.5 / CAPACITY_SCALE * 2


@pytest.mark.parametrize("seed", range(4))
def test_flow_is_at_least_rollout_and_at_most_one(seed):
    attentions = random_attentions(np.random.default_rng(seed), 4, 2, 7)
    flow, rollout = attention_flow(attentions), np.asarray(attention_rollout(attentions.astype(np.float64)))
    assert np.all(flow >= rollout - TOLERANCE)  # rollout is one feasible flow
    assert np.all(flow <= 1 + TOLERANCE)
    assert np.allclose(flow_shares(flow).sum(axis=1), 1.0)


def super_sink_flow(attentions: np.ndarray, output: int) -> tuple[float, np.ndarray]:
    """networkx: max flow from output ``output`` into a super-sink joined to every input; (value, per input)."""
    graph, layers, n = reference_graph(attentions)
    for token in range(n):
        graph.add_edge((0, token), "sink")  # no capacity attribute: unbounded
    value, flows = nx.maximum_flow(graph, (layers, output), "sink")
    return value, np.array([flows[(0, token)]["sink"] for token in range(n)])


def test_a_super_sink_gives_the_total_not_the_per_input_flows():
    """One max-flow per output into a super-sink is exactly 1, but its split is no decomposition of the
    per-input flows: on the hand-built example they sum to 1.5, 2 and 1.75, and a super-sink's split for an
    output differs from its per-input maxima."""
    for output in range(3):
        total, split = super_sink_flow(HAND_ATTENTIONS, output)
        assert total == pytest.approx(1.0)
        assert split.sum() == pytest.approx(1.0)
        assert np.all(split <= HAND_FLOW[output] + 1e-12)  # each share is bounded by the pair's own maximum ...
        assert not np.allclose(split, HAND_FLOW[output])  # ... but is not it
    assert np.allclose(HAND_FLOW.sum(axis=1), [1.5, 2.0, 1.75])
    rng = np.random.default_rng(11)
    attentions = random_attentions(rng, 3, 1, 5)
    for output in range(5):
        total, _ = super_sink_flow(attentions, output)
        assert total == pytest.approx(1.0)  # rollout is a feasible flow of value 1 and the source sends 1
        assert attention_flow(attentions)[output].sum() > 1.0 + 1e-3


def test_unreachable_pairs_are_zero_without_solving():
    n = 6
    window = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1  # each token sees its neighbours
    attentions = random_attentions(np.random.default_rng(5), 2, 1, n, mask=window)
    graph = build_flow_graph(attentions)
    assert np.array_equal(graph.reachable, np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 2)
    flow = attention_flow(attentions)
    assert np.all(flow[~graph.reachable] == 0.0)
    assert np.abs(flow - reference_flow(attentions)).max() <= TOLERANCE


def test_fully_masked_rows_keep_the_residual_path():
    attentions = random_attentions(np.random.default_rng(1), 2, 1, 4)
    attentions[:, :, 2, :] = 0.0  # a fully masked query: its row is zeros, its residual path remains
    flow = attention_flow(attentions)
    assert np.isfinite(flow).all()
    assert np.abs(flow - reference_flow(attentions)).max() <= TOLERANCE


def test_progress_and_cancel():
    attentions = random_attentions(np.random.default_rng(2), 2, 1, 5)
    seen = []
    attention_flow(attentions, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 5) for k in range(1, 6)]
    polls = []
    with pytest.raises(FlowCancelled):
        attention_flow(attentions, cancelled=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4


def test_refuses_cross_attention_and_too_many_tokens():
    with pytest.raises(InvalidSetting, match="cross-attention"):
        attention_flow(np.full((1, 1, 3, 4), 0.25, dtype=np.float32))
    n = FLOW_TOKEN_LIMIT + 1
    with pytest.raises(InvalidSetting, match=f"at most {FLOW_TOKEN_LIMIT} tokens"):
        attention_flow(np.full((1, 1, n, n), 1.0 / n, dtype=np.float32))


def test_full_capacities_give_exact_whole_flows():
    n = 8  # one-hot rows: every capacity is the whole scale, and it still fits SciPy's int32
    attentions = np.zeros((3, 1, n, n), dtype=np.float32)
    attentions[:, :, :, 0] = 1.0
    graph = build_flow_graph(attentions)
    assert graph.capacities.max() <= CAPACITY_SCALE < 2**31
    flow = attention_flow(attentions)
    assert np.abs(flow - reference_flow(attentions)).max() <= TOLERANCE
    assert flow[:, 0] == pytest.approx(np.ones(n), abs=TOLERANCE)
    assert np.array_equal(flow, scipy_flow(attentions))


@pytest.mark.parametrize("seed", range(8))
def test_the_same_integers_as_scipys_dinic(seed):
    """Our Dinic (attnstudio/core/_maxflow.c) and SciPy's solve the same integer network: an exact max-flow is
    one integer, so every value must be equal, not merely close; causal and windowed graphs too."""
    rng = np.random.default_rng(100 + seed)
    layers, heads, n = 1 + seed % 4, 1 + seed % 3, 4 + 2 * seed
    mask = [None, causal_mask(n, n), np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 2][seed % 3]
    attentions = random_attentions(rng, layers, heads, n, mask=mask)
    assert np.array_equal(attention_flow(attentions), scipy_flow(attentions))


def test_the_solver_refuses_arrays_that_are_no_residual_network():
    attentions = random_attentions(np.random.default_rng(4), 2, 1, 3)
    graph = build_flow_graph(attentions)
    arrays = {"offsets": graph.arc_offsets, "heads": graph.arc_heads, "reverse": graph.arc_reverse,
              "capacity": graph.arc_capacities}
    network = _solver().Network(**arrays)
    assert (network.nodes, network.arcs) == (graph.nodes, 2 * graph.tails.size)
    units = network.max_flow(graph.node(2, 0), graph.node(0, 1))
    assert isinstance(units, int) and units == round(scipy_flow(attentions)[0, 1] * CAPACITY_SCALE)
    bad_heads = graph.arc_heads.copy()
    bad_heads[0] = graph.nodes  # a node that does not exist
    bad_reverse = graph.arc_reverse.copy()
    bad_reverse[[0, 1]] = bad_reverse[[1, 0]]  # partners that do not point back
    huge = graph.arc_capacities.copy()
    huge[graph.arc_capacities > 0] = 2**62  # capacities whose sum overflows int64
    bad_offsets = graph.arc_offsets.copy()
    bad_offsets[-1] -= 1  # arcs no node owns
    for name, bad in (("heads", bad_heads), ("reverse", bad_reverse), ("capacity", huge), ("offsets", bad_offsets)):
        with pytest.raises(ValueError, match="residual network"):
            _solver().Network(**{**arrays, name: bad})
    with pytest.raises(TypeError, match="int64"):
        _solver().Network(**{**arrays, "offsets": graph.arc_offsets.astype(np.int32)})
    with pytest.raises(ValueError, match="two different nodes"):
        network.max_flow(3, 3)
    with pytest.raises(ValueError, match="two different nodes"):
        network.max_flow(0, graph.nodes)
    with pytest.raises(TypeError, match="already initialised"):
        network.__init__(**arrays)


def test_a_checkout_without_the_compiled_max_flow_says_how_to_build_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "attnstudio.core._maxflow", None)  # an import of it now fails ...
    monkeypatch.delattr(sys.modules["attnstudio.core"], "_maxflow", raising=False)  # ... and no copy is at hand
    with pytest.raises(BackendUnavailable, match=r"compiled max-flow .*build_ext --inplace"):
        attention_flow(random_attentions(np.random.default_rng(0), 2, 1, 3))


def test_scipy_is_never_imported():
    """The bundle carries no SciPy: flow, the engine and the flow view's core must not need it."""
    code = ("import sys\nimport numpy as np\nimport attnstudio.engine\n"
            "from attnstudio.core.flow import attention_flow\n"
            "attention_flow(np.full((2, 1, 3, 3), 1 / 3, dtype=np.float32))\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('scipy', 'networkx')], 'scipy imported'\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
