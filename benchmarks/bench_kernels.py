"""Kernel speed: attention(...) with weights (naive) and without (tiled) against PyTorch's
scaled_dot_product_attention, and the tiled kernel's share of the machine's float32 matmul rate.
Every ratio is measured side by side in this one run."""
from __future__ import annotations

from functools import partial

import numpy as np
from common import median_time, or_dash, write

from attnstudio.core import attention
from attnstudio.core.backend import configure_host_allocator

HEADS, D_K, LENGTHS = 8, 64, (256, 1024, 4096)


def matmul_rate() -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    seconds = median_time(lambda: a @ a, repeats=5)
    return 2 * 2048**3 / seconds


def main() -> None:
    configure_host_allocator()  # as the app does (Engine and the CLI call it)
    try:
        import torch  # noqa: PLC0415 - optional: only the bench venv (make bench) has PyTorch
        from torch.nn import functional  # noqa: PLC0415 - optional: only the bench venv (make bench) has PyTorch
    except ImportError:
        torch = None
    rate = matmul_rate()
    rows = []
    print(f"float32 matmul rate (2048^2): {rate / 1e9:.1f} GFLOP/s")
    print(f"{'n':>6} {'naive ms':>9} {'tiled ms':>9} {'torch ms':>9} {'naive/torch':>12} {'tiled/torch':>12} "
          f"{'tiled % of matmul rate':>23}")
    for n in LENGTHS:
        rng = np.random.default_rng(n)
        q, k, v = (rng.standard_normal((HEADS, n, D_K)).astype(np.float32) for _ in range(3))
        repeats = 3 if n >= 4096 else 7
        naive = median_time(partial(attention, q, k, v), repeats=repeats, warmup=1)
        tiled = median_time(partial(attention, q, k, v, return_weights=False), repeats=repeats, warmup=1)
        reference = None
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(a)[None] for a in (q, k, v))
            with torch.no_grad():
                reference = median_time(partial(functional.scaled_dot_product_attention, tq, tk, tv),
                                        repeats=repeats, warmup=1)
        flops = 4 * HEADS * n * n * D_K
        row = {"n": n, "naive_s": naive, "tiled_s": tiled, "torch_sdpa_s": reference,
               "naive_over_torch": None if reference is None else naive / reference,
               "tiled_over_torch": None if reference is None else tiled / reference,
               "tiled_fraction_of_matmul_rate": flops / tiled / rate}
        rows.append(row)
        print(f"{n:>6} {naive * 1e3:>9.2f} {tiled * 1e3:>9.2f} {or_dash(reference and reference * 1e3):>9} "
              f"{or_dash(row['naive_over_torch']):>12} {or_dash(row['tiled_over_torch']):>12} "
              f"{100 * row['tiled_fraction_of_matmul_rate']:>22.0f}%")
    if torch is None:
        print("PyTorch is not installed here: no comparison (make bench installs it in the bench environment)")
    write("kernels", {"heads": HEADS, "d_k": D_K, "matmul_flops_per_s": rate, "points": rows,
                      "torch": None if torch is None else torch.__version__,
                      "targets": {"time_over_torch": 0.5, "tiled_fraction_of_matmul_rate": 0.6}})


if __name__ == "__main__":
    main()
