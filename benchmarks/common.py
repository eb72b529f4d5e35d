"""Helpers shared by the benchmark scripts: timing, printing, writing JSON next to the scripts."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the tests' reference implementations (tests/core/flow_reference.py)
    sys.path.append(str(ROOT))


def median_time(function, repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")
    return path


def or_dash(value: float | None) -> str:
    """A ratio or time with two decimals, or '-' where it was not measured."""
    return "-" if value is None else f"{value:.2f}"
