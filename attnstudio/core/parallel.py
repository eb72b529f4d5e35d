"""Run a NumPy kernel over groups of heads on every CPU core.

NumPy's element-wise passes (max, exp, sum over the (n, n) scores) run on one core, and BLAS gains
little from its own threads on attention-sized tiles. So large NumPy kernels split their heads into
one group per core, run the groups in a thread pool (NumPy and BLAS release the GIL), and hold BLAS
to one thread meanwhile, so the cores are not oversubscribed. CuPy and other backends never come here.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

from attnstudio.core.backend import is_host_array

# Below this many scores a kernel call is too short for threads to pay off.
PARALLEL_MIN_SCORES = 1 << 20

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_blas_controller = None
_blas_limiter = None
_blas_users = 0
_blas_modules = 0  # len(sys.modules) when _blas_controller looked at the loaded libraries


def cpu_workers() -> int:
    """The cores this process may use (ATTNSTUDIO_THREADS overrides; 1 turns threading off)."""
    override = os.environ.get("ATTNSTUDIO_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def head_groups(heads: int, workers: int) -> list[slice]:
    """Split ``heads`` into at most ``workers`` contiguous, near-equal slices."""
    groups = max(1, min(heads, workers))
    bounds = [round(i * heads / groups) for i in range(groups + 1)]
    return [slice(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]


def worth_splitting(q, k, v, mask, *, scores: int | None = None) -> bool:
    """True for NumPy inputs (heads, n, d) large enough to share between cores.

    ``scores``: how many scores the kernel computes, where that is not heads * n_q * n_k.
    """
    if cpu_workers() < 2 or not all(is_host_array(a) for a in (q, k, v)):
        return False
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3 or not q.shape[0] == k.shape[0] == v.shape[0] >= 2:
        return False
    if mask is not None and (not is_host_array(mask) or mask.ndim > 3):
        return False
    return (q.shape[0] * q.shape[1] * k.shape[1] if scores is None else scores) >= PARALLEL_MIN_SCORES


def split_mask(mask, heads: int, group: slice):
    """The part of a (n_q, n_k) or (heads | 1, n_q, n_k) mask that a group of heads needs."""
    if mask is None or mask.ndim < 3 or mask.shape[0] != heads:
        return mask
    return mask[group]


@contextlib.contextmanager
def single_threaded_blas():
    """Hold BLAS to one thread inside the block.

    The BLAS thread count is process-wide, so overlapping blocks from several threads share one
    limit: the first to enter sets it and the last to leave restores the original count.
    """
    global _blas_controller, _blas_limiter, _blas_users, _blas_modules  # noqa: PLW0603 - process-wide BLAS state, under _lock
    with _lock:
        if _blas_users == 0 and (_blas_controller is None or _blas_modules != len(sys.modules)):
            # a BLAS library can arrive with an import (SciPy brings its own OpenBLAS): look again after imports
            _blas_controller, _blas_modules = ThreadpoolController(), len(sys.modules)
        if _blas_users == 0:
            _take_blas_control(_blas_controller)
            _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                _take_blas_control(_blas_controller)
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


# Products with at most this many rows (a short text, or the new rows of a prefix-cache extension) run with BLAS
# on one thread: they are matrix-vector sized, and BLAS's threads spin-wait on each other. On a busy 2-core machine
# one key press at 128 tokens took 1.3 s with two BLAS threads and 0.11 s with one.
SMALL_PRODUCT_ROWS = 64


@contextlib.contextmanager
def blas_threads_for_rows(rows: int):
    """One BLAS thread inside the block when the products have at most SMALL_PRODUCT_ROWS rows, else BLAS's own."""
    if rows <= SMALL_PRODUCT_ROWS:
        with single_threaded_blas():
            yield
    else:
        yield


def _take_blas_control(controller) -> None:
    """Let the calling thread change the process-wide BLAS thread count.

    threadpoolctl >= 3.7 only obeys the first thread that ever set an OpenBLAS limit and silently
    ignores the others; our own count of users (under ``_lock``) already keeps threads from fighting.
    """
    for library in controller.lib_controllers:
        clear = getattr(type(library), "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)


def run_groups(function: Callable[[slice], object], groups: Sequence[slice]) -> list:
    """``function(group)`` for every group, in parallel; results in group order."""
    global _pool  # noqa: PLW0603 - one pool per process, made on first use under _lock
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cpu_workers(), thread_name_prefix="attnstudio-kernel")
        pool = _pool
    with single_threaded_blas():
        futures = [pool.submit(function, group) for group in groups]
        return [future.result() for future in futures]
