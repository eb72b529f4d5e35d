"""The CuPy path on a real GPU: kernels against PyTorch's scaled_dot_product_attention on the same device,
peak device memory of the naive and tiled kernels, and the built-in model's forward against Hugging Face's
BertModel on the GPU. Also checks that results stay on the device until they are drawn and that our timers
wait for queued work (a timer read without synchronising would report the launch time only).

Needs a CUDA GPU; where none is usable it says why and exits with status 0 without writing results.
"""
from __future__ import annotations

import statistics
import sys
import time
from functools import partial

import numpy as np
from common import or_dash, write

from attnstudio.core import attention
from attnstudio.core.backend import cupy_status, is_out_of_memory, resolve_backend
from attnstudio.core.transformer import encode
from attnstudio.engine import Engine
from attnstudio.session import Session

HEADS, D_K = 8, 64
KERNEL_LENGTHS = (256, 1024, 4096, 16384)
MEMORY_LENGTHS = (4096, 16384, 32768)


def device_time(function, synchronize, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds per call, waiting for the device after each call."""
    for _ in range(warmup):
        function()
    synchronize()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def random_qkv(backend, n: int):
    """Seeded float32 (HEADS, n, D_K) queries, keys and values on the device."""
    rng = np.random.default_rng(n)
    return tuple(backend.asarray(rng.standard_normal((HEADS, n, D_K)).astype(np.float32)) for _ in range(3))


def kernels(backend, torch) -> list[dict]:
    rows = []
    print(f"{'n':>6} {'naive ms':>9} {'tiled ms':>9} {'torch ms':>9} {'naive/torch':>12} {'tiled/torch':>12}")
    for n in KERNEL_LENGTHS:
        q, k, v = random_qkv(backend, n)
        repeats = 5 if n >= 16384 else 20
        naive = device_time(partial(attention, q, k, v), backend.synchronize, repeats) if n <= 16384 else None
        tiled = device_time(partial(attention, q, k, v, return_weights=False), backend.synchronize, repeats)
        reference = None
        if torch is not None:
            tq, tk, tv = (torch.from_dlpack(a)[None] for a in (q, k, v))
            with torch.no_grad():
                reference = device_time(partial(torch.nn.functional.scaled_dot_product_attention, tq, tk, tv),
                                        torch.cuda.synchronize, repeats)
        row = {"n": n, "naive_s": naive, "tiled_s": tiled, "torch_sdpa_s": reference,
               "naive_over_torch": reference and naive / reference, "tiled_over_torch": reference and tiled / reference}
        rows.append(row)
        print(f"{n:>6} {naive * 1e3:>9.3f} {tiled * 1e3:>9.3f} {or_dash(reference and reference * 1e3):>9} "
              f"{or_dash(row['naive_over_torch']):>12} {or_dash(row['tiled_over_torch']):>12}")
    return rows


def memory(backend) -> list[dict]:
    rows = []
    print(f"{'n':>6} {'naive MiB':>10} {'tiled MiB':>10}  (device memory beyond the inputs)")
    for n in MEMORY_LENGTHS:
        q, k, v = random_qkv(backend, n)
        peaks = {}
        for name, keep in (("naive", True), ("tiled", False)):
            try:
                with backend.track_peak_memory() as measured:
                    result = attention(q, k, v, return_weights=keep)
                    del result
                peaks[name] = measured["peak_bytes"]
            except Exception as error:  # an out-of-memory point is a result, not a failure
                if not is_out_of_memory(error):
                    raise
                peaks[name] = None
        rows.append({"n": n, "naive_peak_bytes": peaks["naive"], "tiled_peak_bytes": peaks["tiled"]})
        naive, tiled = ("OOM" if peak is None else f"{peak / 2**20:.1f}" for peak in (peaks["naive"], peaks["tiled"]))
        print(f"{n:>6} {naive:>10} {tiled:>10}")
        del q, k, v
    return rows


def forward(backend, torch) -> list[dict]:
    engine = Engine()
    model = engine.model(Session())
    weights = engine.parameters(model, backend)
    hf = None
    if torch is not None:
        try:
            from transformers import BertModel  # noqa: PLC0415 - optional: only the bench venv (make bench) has transformers
            hf = BertModel.from_pretrained(str(model.folder), attn_implementation="eager").eval().cuda()
        except ImportError:
            hf = None
    rows = []
    host_weights = model.parameters
    print(f"{'tokens':>6} {'ours ms':>8} {'HF ms':>8} {'ours/HF':>8} {'no-sync ms':>11} {'NumPy ms':>9}")
    for text in ("The cat sat on the mat because it was tired.", " ".join(["word"] * 126)):
        ids_host = model.tokenizer.encode(text).ids
        ids = backend.asarray(np.asarray(ids_host))
        result = encode(weights, ids)
        on_device = all(type(trace.weights).__module__.startswith("cupy") for trace in result.traces)
        ours = device_time(partial(encode, weights, ids), backend.synchronize)
        unsynchronised = statistics.median(_launch_only(partial(encode, weights, ids), backend) for _ in range(20))
        reference = None
        if hf is not None:
            tensor = torch.tensor(ids_host, device="cuda")[None]
            with torch.no_grad():
                reference = device_time(partial(hf, tensor, output_attentions=True), torch.cuda.synchronize)
        on_cpu = device_time(partial(encode, host_weights, np.asarray(ids_host)), lambda: None)
        row = {"tokens": len(ids_host), "ours_s": ours, "hf_s": reference, "launch_only_s": unsynchronised,
               "ours_numpy_s": on_cpu,
               "ours_over_hf": reference and ours / reference, "weights_stay_on_device": on_device}
        rows.append(row)
        print(f"{len(ids_host):>6} {ours * 1e3:>8.2f} {'-' if reference is None else f'{reference * 1e3:.2f}':>8} "
              f"{'-' if reference is None else f'{ours / reference:.2f}':>8} {unsynchronised * 1e3:>11.2f} "
              f"{on_cpu * 1e3:>9.2f}")
    return rows


def _launch_only(function, backend) -> float:
    backend.synchronize()
    started = time.perf_counter()
    function()
    elapsed = time.perf_counter() - started
    backend.synchronize()
    return elapsed


def main() -> int:
    usable, detail = cupy_status()
    if not usable:
        print(f"no GPU benchmark: {detail}")
        return 0
    backend = resolve_backend("cupy")
    try:
        import torch  # noqa: PLC0415 - optional: only the bench venv (make bench) has PyTorch
        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    print(f"GPU: {detail}; CuPy {backend.xp.__version__}; PyTorch {getattr(torch, '__version__', 'absent')}")
    payload = {"gpu": detail, "cupy": backend.xp.__version__, "torch": getattr(torch, "__version__", None),
               "heads": HEADS, "d_k": D_K}
    payload["kernels"] = kernels(backend, torch)
    payload["memory"] = memory(backend)
    payload["forward"] = forward(backend, torch)
    write("gpu", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
