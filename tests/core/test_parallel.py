"""Large NumPy kernels share their heads between cores; the result must not depend on it."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from attnstudio.core import attention_sliding_window, attention_tiled, causal_mask, parallel


def test_head_groups_cover_every_head_once():
    for heads in range(1, 13):
        for workers in range(1, 6):
            groups = parallel.head_groups(heads, workers)
            covered = [h for group in groups for h in range(heads)[group]]
            assert covered == list(range(heads)) and len(groups) == min(heads, workers)


def test_only_large_numpy_inputs_are_split(monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "2")
    big = np.zeros((4, 512, 16), np.float32)
    assert parallel.worth_splitting(big, big, big, None)
    assert not parallel.worth_splitting(big[:, :100], big[:, :100], big[:, :100], None)
    assert not parallel.worth_splitting(big[:1], big[:1], big[:1], None), "one head: nothing to share"
    assert not parallel.worth_splitting(big[None], big[None], big[None], None), "batched inputs stay serial"
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "1")
    assert not parallel.worth_splitting(big, big, big, None)


@pytest.mark.parametrize("per_head_mask", [False, True])
def test_split_kernels_match_the_serial_ones(monkeypatch, per_head_mask):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((5, 600, 16)).astype(np.float32) for _ in range(3))
    mask = causal_mask(600, 600)
    if per_head_mask:
        mask = np.broadcast_to(mask, (5, 600, 600)).copy()
        mask[2, :, :10] = False
    calls = []
    real = parallel.run_groups
    monkeypatch.setattr(parallel, "run_groups", lambda f, groups: calls.append(len(groups)) or real(f, groups))
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "3")
    split_tiled = attention_tiled(q, k, v, mask=mask)
    split_window = attention_sliding_window(q, k, v, width=300)
    assert calls == [3, 3]
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "1")
    np.testing.assert_allclose(split_tiled, attention_tiled(q, k, v, mask=mask), atol=1e-6)
    np.testing.assert_allclose(split_window, attention_sliding_window(q, k, v, width=300), atol=1e-6)
    assert calls == [3, 3], "one thread: no split"


def test_overlapping_blas_limits_restore_the_original_thread_count():
    def blas_threads():
        return [entry["num_threads"] for entry in threadpool_info() if entry["user_api"] == "blas"]

    original = blas_threads()
    entered, release = threading.Barrier(2), threading.Event()

    def hold(wait_first: bool):
        with parallel.single_threaded_blas():
            entered.wait()
            if wait_first:
                release.wait()

    with parallel.single_threaded_blas():  # the main thread limits first: another thread must still be obeyed
        pass
    slow = threading.Thread(target=hold, args=(True,))
    slow.start()
    hold(False)  # enters after the slow thread and leaves before it
    assert all(n == 1 for n in blas_threads()), "still limited while the other thread is inside"
    release.set()
    slow.join()
    assert blas_threads() == original
