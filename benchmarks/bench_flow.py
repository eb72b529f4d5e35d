"""Attention flow (core.flow: one Dinic max-flow per token pair in C, attnstudio/core/_maxflow.c) side by side with
SciPy's Dinic on the same integer network (scipy.sparse.csgraph.maximum_flow, what core.flow used before) and the
reference construction (Abnar & Zuidema's code: networkx Edmonds–Karp, real-valued capacities, one max-flow per
pair); the two references are tests/core/flow_reference.py, shared with the tests.

Cases: MiniLM (6 layers) at 24 tokens (goal <= 0.5 s) and 64 tokens (goal <= 5 s), and a 12-layer, 12-head
synthetic attention stack (softmax of random scores) at 24 tokens. SciPy is timed on every case and must give
the very same values (equal integers: both are exact); the networkx reference is timed only where it finishes in
reasonable time: at 8 and 16 tokens (BENCH_FLOW_REFERENCE_TOKENS, e.g. "8"), where both are also checked to
agree within 1e-4. Wall and CPU seconds are both reported: on a shared machine the CPU time is the steadier.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
from common import write  # also puts the project root on sys.path, for tests.core.flow_reference

from attnstudio.core.flow import TOLERANCE, attention_flow
from attnstudio.engine import Engine
from attnstudio.session import Session
from tests.core.flow_reference import reference_flow, scipy_flow

REPEATS = int(os.environ.get("BENCH_FLOW_REPEATS", "3"))
REFERENCE_TOKENS = tuple(int(n) for n in os.environ.get("BENCH_FLOW_REFERENCE_TOKENS", "8,16").split(",") if n)
GOALS_S = {("minilm", 24): 0.5, ("minilm", 64): 5.0}
WORDS = "the cat sat on the mat and then it ran to the old red barn by the green hill".split()


def minilm_attentions(engine: Engine, tokens: int) -> np.ndarray:
    """(6, 12, tokens, tokens) MiniLM weights for a text of exactly ``tokens`` tokens ([CLS] and [SEP] included)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens - 2)]  # one token each
    result = engine.compute(Session(text=" ".join(words), backend="numpy"))
    assert len(result.query_tokens) == tokens, (len(result.query_tokens), tokens)
    return result.attentions()


def synthetic_attentions(tokens: int, layers: int = 12, heads: int = 12, seed: int = 0) -> np.ndarray:
    """(layers, heads, tokens, tokens): softmax of N(0, 2²) scores, a stand-in for a 12-layer model."""
    scores = np.random.default_rng(seed).normal(scale=2.0, size=(layers, heads, tokens, tokens))
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def timed(function, repeats: int) -> tuple[float, float, object]:
    """(median wall s, median CPU s, last value)."""
    walls, cpus, value = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), value


def main() -> None:
    engine = Engine()
    cases = [("minilm", n, lambda n=n: minilm_attentions(engine, n)) for n in sorted({*REFERENCE_TOKENS, 24, 64})]
    cases += [("synthetic-12-layer", n, lambda n=n: synthetic_attentions(n)) for n in sorted({*REFERENCE_TOKENS, 24})]
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'model':>20} {'layers':>6} {'tokens':>6} {'ours wall s':>11} {'ours CPU s':>10} {'goal s':>6} "
          f"{'scipy wall s':>12} {'scipy CPU s':>11} {'equal':>5} {'networkx s':>10} {'max |diff|':>10}")
    for model, tokens, make in cases:
        attentions = make()
        repeats = 1 if tokens >= 64 else REPEATS
        attention_flow(attentions[:, :, :4, :4])  # warm-up
        scipy_flow(attentions[:, :, :4, :4])  # warm-up: imports scipy.sparse.csgraph
        wall, cpu, ours = timed(lambda a=attentions: attention_flow(a), repeats)
        scipy_wall, scipy_cpu, theirs = timed(lambda a=attentions: scipy_flow(a), repeats)
        equal = bool(np.array_equal(ours, theirs))
        assert equal, f"{model} at {tokens} tokens: SciPy's Dinic finds other integers"
        reference_s = difference = None
        if tokens in REFERENCE_TOKENS:
            reference_s, _, reference = timed(lambda a=attentions: reference_flow(a), 1)
            difference = float(np.abs(ours - reference).max())
            assert difference <= TOLERANCE, difference
        goal = GOALS_S.get((model, tokens))
        rows.append({"model": model, "layers": int(attentions.shape[0]), "tokens": tokens, "ours_wall_s": wall,
                     "ours_cpu_s": cpu, "goal_s": goal, "scipy_wall_s": scipy_wall, "scipy_cpu_s": scipy_cpu,
                     "equal_to_scipy": equal, "networkx_s": reference_s, "max_abs_diff_networkx": difference})
        print(f"{model:>20} {attentions.shape[0]:>6} {tokens:>6} {wall:>11.3f} {cpu:>10.3f} "
              f"{'-' if goal is None else f'{goal:g}':>6} {scipy_wall:>12.3f} {scipy_cpu:>11.3f} {'yes':>5} "
              f"{'-' if reference_s is None else f'{reference_s:.2f}':>10} "
              f"{'-' if difference is None else f'{difference:.1e}':>10}", flush=True)
    write("flow", {"points": rows, "scipy": "scipy.sparse.csgraph.maximum_flow (Dinic) on the same integer network",
                   "reference": "networkx Edmonds-Karp, real-valued capacities, timed only at "
                   f"{', '.join(map(str, REFERENCE_TOKENS)) or 'no'} tokens", "load_average": os.getloadavg()[0],
                   "goals_s": {f"{model}@{tokens}": goal for (model, tokens), goal in GOALS_S.items()}})


if __name__ == "__main__":
    main()
