"""Runs every benchmark in turn (make bench); each prints its table and writes results/<name>.json."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BENCHMARKS = ("bench_kernels", "bench_forward", "bench_decoder", "bench_decoder_app", "bench_launch", "bench_memory",
              "bench_app", "bench_long", "bench_flow", "bench_gpu")
for name in BENCHMARKS:
    print(f"\n=== {name} ===", flush=True)
    try:
        runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise
