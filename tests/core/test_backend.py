"""Backend choice: NumPy always, CuPy only where a GPU is usable, with a readable reason otherwise."""
from __future__ import annotations

import sys
import types

import array_api_strict as xps
import numpy as np
import pytest

from attnstudio import engine
from attnstudio.core import attention, attention_tiled, backend, causal_mask, softmax
from attnstudio.core import backend as backend_module
from attnstudio.core.backend import (
    FEW_ROWS_MAX,
    array_namespace,
    cupy_status,
    fused_kernel,
    masked_fill,
    project,
    resolve_backend,
    to_numpy,
)
from attnstudio.core.transformer import gelu, layer_norm
from attnstudio.engine import Engine
from attnstudio.errors import BackendUnavailable
from attnstudio.session import Session

GPU_USABLE, GPU_REASON = cupy_status()


def fake_cupy(available: bool):
    module = types.ModuleType("cupy")
    module.is_available = lambda: available
    module.ndarray = type("ndarray", (), {"__module__": "cupy._core.core"})  # CuPy 14's: no __array_namespace__
    return module


def test_cupy_installed_without_a_gpu_falls_back_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(False))
    usable, reason = cupy_status()
    assert not usable and "no usable CUDA GPU" in reason
    assert resolve_backend("auto").name == "numpy"
    with pytest.raises(BackendUnavailable, match="no usable CUDA GPU"):
        resolve_backend("cupy")


def test_cupy_missing_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    usable, reason = cupy_status()
    assert not usable and "not installed" in reason
    assert resolve_backend("auto").name == "numpy"


def test_unknown_backend_is_refused():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        resolve_backend("tpu")


def test_engine_reports_an_unusable_cupy_backend_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(False))
    with pytest.raises(BackendUnavailable, match="GPU"):
        Engine().compute(Session(backend="cupy"))
    assert Engine().compute(Session(backend="auto")).backend.name == "numpy"


def test_numpy_peak_memory_is_measured():
    with backend_module.NUMPY.track_peak_memory() as measured:
        block = np.ones((1000, 1000))
        del block
    assert 8_000_000 <= measured["peak_bytes"] < 9_000_000


def test_to_numpy_passes_numpy_through():
    array = np.arange(3)
    assert to_numpy(array) is array


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
def test_cupy_kernels_match_numpy():
    import cupy  # noqa: PLC0415 - optional: only where a CUDA GPU is usable


    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((4, 300, 32)).astype(np.float32) for _ in range(3))
    expected, expected_weights = attention(q, k, v, mask=causal_mask(300, 300))
    output, weights = attention(*(cupy.asarray(a) for a in (q, k, v)), mask=causal_mask(300, 300, cupy))
    assert isinstance(output, cupy.ndarray)
    np.testing.assert_allclose(output.get(), expected, atol=1e-5)
    np.testing.assert_allclose(weights.get(), expected_weights, atol=1e-5)
    tiled = attention_tiled(*(cupy.asarray(a) for a in (q, k, v)), mask=causal_mask(300, 300, cupy), block_q=64)
    np.testing.assert_allclose(tiled.get(), expected, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
def test_synthetic_seed_gives_the_same_result_on_both_backends():
    kwargs = {"model": "synthetic", "heads": 3, "d_k": 8, "d_model": 32, "seed": 5}
    on_cpu = Engine().compute(Session(backend="numpy", **kwargs)).attentions()
    on_gpu = Engine().compute(Session(backend="cupy", **kwargs)).attentions()
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-5)


def test_cupy_arrays_get_the_cupy_namespace_even_without_array_namespace(monkeypatch):
    # CuPy 14's ndarray has no __array_namespace__; treating it as NumPy broke every kernel on a real GPU

    module = fake_cupy(True)
    monkeypatch.setitem(sys.modules, "cupy", module)
    assert array_namespace(None, module.ndarray()) is module
    assert array_namespace(np.zeros(2)) is np


def test_masked_fill_writes_in_place_only_where_asked_and_possible():
    scores = np.arange(6, dtype=np.float32).reshape(2, 3)
    mask = np.array([[True, False, True], [False, True, True]])
    kept = masked_fill(scores, mask, np.float32(-np.inf), inplace=False)
    assert kept is not scores and np.isfinite(scores).all()
    filled = masked_fill(scores, mask, np.float32(-np.inf), inplace=True)
    assert filled is scores and np.isinf(scores[~mask]).all() and (scores[mask] == [0, 2, 4, 5]).all()
    strict = masked_fill(xps.asarray([1.0, 2.0]), xps.asarray([True, False]), xps.asarray(0.0), inplace=True)
    assert np.asarray(strict._array).tolist() == [1.0, 0.0], "array_api_strict has no copyto: a new array"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_the_engine_tunes_the_host_allocator(monkeypatch):
    assert backend.configure_host_allocator() is True, "glibc accepts every setting"
    calls = []
    monkeypatch.setattr(engine, "configure_host_allocator", lambda: calls.append(1))
    Engine()
    assert calls == [1]


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
def test_fused_gpu_kernels_match_the_array_code():
    import cupy  # noqa: PLC0415 - optional: only where a CUDA GPU is usable


    rng = np.random.default_rng(11)
    x = (rng.standard_normal((50, 384)) * 3).astype(np.float32)
    assert fused_kernel("gelu", cupy.asarray(x)) is not None and fused_kernel("gelu", x) is None
    np.testing.assert_allclose(gelu(cupy.asarray(x)).get(), gelu(x.copy()), atol=1e-6)
    weight, bias = (rng.standard_normal(384).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(
        layer_norm(cupy.asarray(x), (cupy.asarray(weight), cupy.asarray(bias)), 1e-12).get(),
        layer_norm(x, (weight, bias), 1e-12), atol=1e-5)
    scores = (rng.standard_normal((3, 20, 30)) * 30).astype(np.float32)
    mask = rng.random((20, 30)) > 0.3
    mask[4] = False  # a fully masked row: zeros, never NaN
    for overwrite in (False, True):
        on_gpu = softmax(cupy.asarray(scores), cupy.asarray(mask), overwrite=overwrite).get()
        expected = softmax(scores.copy(), mask)
        assert np.isfinite(on_gpu).all() and (on_gpu[:, 4] == 0).all()
        np.testing.assert_allclose(on_gpu, expected, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9])
def test_project_equals_a_matrix_product_for_any_number_of_rows(rows):
    """A few rows go through the few-rows kernel (or row by row without it): the same product, float32, same shape."""
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 64), dtype=np.float32)
    weight = rng.standard_normal((64, 96), dtype=np.float32)
    product = project(x, weight)
    assert product.shape == (rows, 96) and product.dtype == np.float32
    np.testing.assert_allclose(product, x.astype(np.float64) @ weight.astype(np.float64), rtol=0, atol=1e-4)
    kernel = backend_module.few_rows_kernel()
    if rows <= FEW_ROWS_MAX and kernel is not None:  # the compiled kernel's own result, bit for bit
        expected = np.empty_like(product)
        kernel[0].rows_matmul(x, weight, expected, 1)
        np.testing.assert_array_equal(product, expected)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_project_without_the_compiled_kernel_goes_row_by_row(rows, monkeypatch):
    """A checkout where core/_fewrows.c was never built: each row is exactly its own BLAS matrix-vector product."""
    monkeypatch.setattr(backend_module, "few_rows_kernel", lambda: None)
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 64), dtype=np.float32)
    weight = rng.standard_normal((64, 96), dtype=np.float32)
    product = project(x, weight)
    for row in range(rows):
        np.testing.assert_array_equal(product[row], (x[row:row + 1] @ weight)[0])
