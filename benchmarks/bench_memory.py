"""Peak memory of the tiled kernel as n grows (measured with tracemalloc), up to n = 32768, 8 heads, d_k 64."""
from __future__ import annotations

import time

import numpy as np
from common import write

from attnstudio.core.backend import NUMPY
from attnstudio.core.kernels import attention_tiled
from attnstudio.core.profiling import fit_exponent

HEADS, D_K = 8, 64


def main() -> None:
    rows = []
    for n in (4096, 8192, 16384, 32768):
        rng = np.random.default_rng(n)
        q, k, v = (rng.standard_normal((HEADS, n, D_K)).astype(np.float32) for _ in range(3))
        inputs = 3 * q.nbytes
        started = time.perf_counter()
        with NUMPY.track_peak_memory() as memory:
            attention_tiled(q, k, v)
        seconds = time.perf_counter() - started
        rows.append({"n": n, "peak_bytes": memory["peak_bytes"], "inputs_bytes": inputs, "seconds": seconds})
        print(f"n={n:>6}: peak {memory['peak_bytes'] / 2**20:8.1f} MiB beyond the {inputs / 2**20:.0f} MiB of inputs "
              f"(total {(memory['peak_bytes'] + inputs) / 2**30:.2f} GiB), {seconds:.1f} s")
    exponent = fit_exponent([r["n"] for r in rows], [r["peak_bytes"] for r in rows])
    print(f"memory exponent: {exponent:.2f}")
    write("memory", {"heads": HEADS, "d_k": D_K, "points": rows, "memory_exponent": exponent,
                     "target": {"n_32768_total_gib_at_most": 2.0}})


if __name__ == "__main__":
    main()
