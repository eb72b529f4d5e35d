"""The compiled few-rows kernel (attnstudio/core/_fewrows.c): x (m, K) @ w (K, N) with the weights read once and
shared out between threads. Exact to float32 rounding, the same bits whatever the thread count, safe from several
Python threads and after fork, and a clear error for anything but C-contiguous 2-D float32."""
from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from attnstudio.core import backend

KERNEL = backend.few_rows_kernel()


def test_the_kernel_is_built():
    """`pip install .` (make venv, the packages) compiles it; without it live typing reads the weights per row."""
    assert KERNEL is not None, "attnstudio/core/_fewrows.c is not built: run pip install -e ."


def rows_matmul(x, w, threads):
    out = np.full((x.shape[0], w.shape[1]), np.nan, dtype=np.float32)
    KERNEL[0].rows_matmul(x, w, out, threads)
    return out


@pytest.mark.parametrize(("m", "K", "N"), [(1, 576, 3072), (2, 1536, 576), (3, 576, 960), (4, 64, 96),
                                          (5, 7, 13), (8, 300, 1001), (2, 1, 5), (1, 9, 1)])
def test_equals_the_float64_product(m, K, N):
    """Every row, every column (tails past the vector width and K smaller than the pieces included)."""
    rng = np.random.default_rng(m * 1000 + K)
    x = rng.standard_normal((m, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    for threads in (1, 2):
        out = rows_matmul(x, w, threads)
        scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)  # the sum's own size bounds rounding
        assert np.all(np.abs(out - exact) <= 1e-6 * scale + 1e-30)
        assert np.abs(out - exact).max() > 0 or m * N < 32  # float32 sums: it is not secretly computed in float64


def test_the_same_bits_for_any_thread_count_and_every_call():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1536), dtype=np.float32)
    w = rng.standard_normal((1536, 576), dtype=np.float32)
    first = rows_matmul(x, w, 1)
    for threads in (1, 2, 3, 8):
        for _ in range(5):
            np.testing.assert_array_equal(rows_matmul(x, w, threads), first)


def test_several_python_threads_at_once_each_get_their_own_product():
    rng = np.random.default_rng(2)
    problems = [(rng.standard_normal((1 + i % 3, 256), dtype=np.float32),
                 rng.standard_normal((256, 512), dtype=np.float32)) for i in range(6)]
    expected = [rows_matmul(x, w, 1) for x, w in problems]
    failures = []

    def run(index):
        x, w = problems[index]
        for _ in range(50):
            if not np.array_equal(rows_matmul(x, w, 2), expected[index]):
                failures.append(index)
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(problems))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() exists on POSIX only")
def test_a_forked_child_computes_without_the_parents_helper_threads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 128), dtype=np.float32)
    w = rng.standard_normal((128, 64), dtype=np.float32)
    expected = rows_matmul(x, w, 2)  # the parent's helpers exist now
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        os._exit(0 if np.array_equal(rows_matmul(x, w, 2), expected) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize(("x", "w", "out", "threads", "error", "words"), [
    (np.ones((1, 4)), np.ones((4, 3), np.float32), np.ones((1, 3), np.float32), 1, TypeError, "x must be"),
    (np.ones((1, 4), np.float32), np.ones((3, 4), np.float32).T, np.ones((1, 3), np.float32), 1, BufferError, ""),
    (np.ones((1, 4), np.float32), np.ones((5, 3), np.float32), np.ones((1, 3), np.float32), 1, ValueError, "fit"),
    (np.ones((9, 4), np.float32), np.ones((4, 3), np.float32), np.ones((9, 3), np.float32), 1, ValueError, "1 to 8"),
    (np.ones((1, 4), np.float32), np.ones((4, 3), np.float32), np.ones((1, 3), np.float32), 0, ValueError, "threads"),
    (np.ones(4, np.float32), np.ones((4, 3), np.float32), np.ones((1, 3), np.float32), 1, TypeError, "2-D"),
])
def test_anything_else_is_a_clear_error(x, w, out, threads, error, words):
    if error is BufferError:  # a non-contiguous buffer: the buffer protocol's own refusal
        with pytest.raises((BufferError, ValueError, TypeError)):
            KERNEL[0].rows_matmul(x, w, out, threads)
        return
    with pytest.raises(error, match=words):
        KERNEL[0].rows_matmul(x, w, out, threads)


def test_the_output_must_be_writable():
    out = np.ones((1, 3), np.float32)
    out.flags.writeable = False
    with pytest.raises((BufferError, ValueError, TypeError)):
        KERNEL[0].rows_matmul(np.ones((1, 4), np.float32), np.ones((4, 3), np.float32), out, 1)


def test_it_says_which_kernel_runs():
    """The benchmark reports it: AVX2 + FMA where the CPU has both (x86-64 builds), else the baseline build."""
    assert KERNEL[0].KERNEL in ("avx2+fma", "baseline") and KERNEL[0].MAX_ROWS == backend.FEW_ROWS_MAX
    assert KERNEL[0].THREADED == (0 if sys.platform == "win32" else 1)


def test_it_counts_its_products_and_says_whether_it_has_set_its_helpers_aside():
    """contention(): how often the caller gave up on helpers descheduled mid-piece (a busy machine) and worked
    alone for a while; the benchmark reports it beside its timings."""
    before = KERNEL[0].contention()
    rows_matmul(np.ones((1, 64), np.float32), np.ones((64, 32), np.float32), 2)
    after = KERNEL[0].contention()
    assert set(after) == {"products", "backoffs", "alone"} and isinstance(after["alone"], bool)
    if KERNEL[0].THREADED:
        assert after["products"] == before["products"] + 1 and after["backoffs"] >= before["backoffs"]
