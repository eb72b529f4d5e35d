"""Array backends: NumPy (CPU) and CuPy (GPU).

Everything backend-specific lives here: choosing a backend, moving arrays to and
from the device, synchronising before a timer is read, measuring peak memory, and
tuning the host allocator.
Compute functions never import CuPy; they take their array module from their
inputs with :func:`array_namespace`.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from attnstudio.errors import BackendUnavailable

# The backends a session can ask for, with the control panel's names for them; "auto" picks CuPy where usable.
BACKEND_LABELS = {"auto": "Auto", "numpy": "NumPy (CPU)", "cupy": "CuPy (GPU)"}
BACKEND_NAMES = tuple(BACKEND_LABELS)
DEVICE_BACKENDS = tuple(name for name in BACKEND_NAMES if name != "auto")  # what a profiler sweep measures


def is_cupy_array(x) -> bool:
    """True for CuPy arrays, recognised by module so CuPy is never imported to ask."""
    return type(x).__module__.startswith("cupy")


def _takes_out(x) -> bool:
    """NumPy and CuPy arrays can be written in place through ``out=`` / ``copyto``."""
    return isinstance(x, np.ndarray) or is_cupy_array(x)


def array_namespace(*arrays: Any):
    """The array module (numpy, cupy, array_api_strict, ...) that owns ``arrays``; NumPy when none is an array.

    array-api-compat's lookup, asked for the libraries' own modules (``use_compat=False``), not its
    wrappers: the kernels' fast paths write in place through NumPy's and CuPy's ``out=``, which the
    array API does not have. None and Python scalars are skipped; arrays of two libraries are an error.
    """
    if arrays and all(type(array) is np.ndarray for array in arrays):  # the common case, without the 5 us lookup
        return np
    try:
        return array_api_compat.array_namespace(*arrays, use_compat=False)
    except TypeError:
        if any(not _is_scalar(array) for array in arrays):
            raise  # two libraries, or an object that is no array
        return np


def _is_scalar(x) -> bool:
    return x is None or isinstance(x, bool | int | float | complex)


def matrix_transpose(x):
    """Swap the last two axes (array API ``matrix_transpose``; ``swapaxes`` where it is missing)."""
    xp = array_namespace(x)
    transpose = getattr(xp, "matrix_transpose", None)
    return transpose(x) if transpose is not None else xp.swapaxes(x, -1, -2)


def permute_dims(x, axes):
    """Reorder axes (array API ``permute_dims``; ``transpose`` where it is missing)."""
    xp = array_namespace(x)
    permute = getattr(xp, "permute_dims", None) or xp.transpose
    return permute(x, axes)


def concat(arrays, axis):
    """Join arrays along ``axis`` (array API ``concat``; ``concatenate`` where it is missing)."""
    xp = array_namespace(*arrays)
    join = getattr(xp, "concat", None) or xp.concatenate
    return join(arrays, axis=axis)


def exp_inplace(x):
    """exp(x), written into x where the backend allows it (NumPy and CuPy ufuncs take ``out=``)."""
    xp = array_namespace(x)
    if _takes_out(x):
        return xp.exp(x, out=x)
    return xp.exp(x)


# glibc mallopt() options, and what attnstudio sets them to (see configure_host_allocator)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_HOST_ALLOCATOR = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 64 << 20))


@functools.cache
def configure_host_allocator() -> bool:
    """Let glibc keep freed arrays' memory for the next ones (Linux only; idempotent).

    By default glibc hands every array over ~128 KiB straight back to the kernel when it is freed, so
    the next one starts on fresh pages that fault in one by one. A forward pass frees and reallocates
    dozens of such arrays per layer: that page-faulting cost about a third of its time. With these
    settings arrays up to 32 MiB come from the heap, which keeps up to 256 MiB of free memory.
    Returns whether the allocator was configured.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, say)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in _HOST_ALLOCATOR)


# One-launch CuPy kernels for the encoder's element-wise steps. Written with xp, each of these steps is
# several array operations, and on a GPU every operation is a kernel launch costing more host time than
# the work itself at the sizes the app shows (a 128-token forward made ~450 launches).
_FUSED_SOURCES = {
    "gelu": ("T x", "T y", "y = (T)0.5 * x * ((T)1 + erf(x * (T)0.70710678118654752440))"),
    # LayerNorm from row sums (CuPy's mean() costs three times a sum() in host time)
    "layer_norm_square": ("T x, T row_sum, T inv_width", "T y", "T c = x - row_sum * inv_width; y = c * c"),
    "layer_norm": ("T x, T row_sum, T square_sum, T inv_width, T weight, T bias, T eps", "T y",
                   "y = (x - row_sum * inv_width) * rsqrt(square_sum * inv_width + eps) * weight + bias"),
    "softmax_exp": ("T x, T row_max", "T y", "y = exp(x - (isfinite(row_max) ? row_max : (T)0))"),
    "softmax_normalise": ("T e, T total", "T y", "y = total > (T)0 ? e / total : (T)0"),
}
_fused_kernels: dict[str, Any] = {}


def fused_kernel(name: str, like) -> Any:
    """The one-launch CuPy kernel ``name`` when ``like`` is a CuPy array, else None (use the xp code)."""
    if not is_cupy_array(like):
        return None
    kernel = _fused_kernels.get(name)
    if kernel is None:
        import cupy  # noqa: PLC0415 - only reached when a CuPy array exists

        inputs, outputs, body = _FUSED_SOURCES[name]
        kernel = _fused_kernels[name] = cupy.ElementwiseKernel(inputs, outputs, body, f"attnstudio_{name}")
    return kernel


def is_host_array(x) -> bool:
    """True for NumPy arrays: data in host memory, where reading a value costs no device round trip."""
    return isinstance(x, np.ndarray)


# OpenBLAS's sgemm packs its whole right-hand matrix on every call, so a product with a few rows on the left reads
# a weight matrix several times over: SmolLM2's 30 layers took 9 ms for one new row and 36 ms for two; row by row,
# 21 and 30 ms (matrix-vector products, BLAS on one core: its own threads spin-wait). attnstudio's compiled kernel
# (core/_fewrows.c) reads each weight once for all the rows and shares the weights out between the cores: 14.5 and
# 19 ms on a 2-core machine. Up to this many rows; above, the packed product catches up.
FEW_ROWS_MAX = 8


@functools.cache
def few_rows_kernel() -> tuple[Any, int] | None:
    """(attnstudio.core._fewrows, cores to use), or None where the extension was never built (a bare checkout:
    products then go row by row through BLAS)."""
    from attnstudio.core.parallel import cpu_workers  # noqa: PLC0415 - parallel imports this module

    try:
        from attnstudio.core import _fewrows  # noqa: PLC0415 - compiled; a checkout without it still runs
    except ImportError:
        return None
    return _fewrows, cpu_workers()


def project(x, weight):
    """x @ weight, (n, d_in) @ (d_in, d_out) -> (n, d_out); a few rows of NumPy float32 go through the few-rows
    kernel (see above), the weights read once."""
    rows = x.shape[0] if x.ndim == 2 else 0
    if not 1 <= rows <= FEW_ROWS_MAX or not (is_host_array(x) and is_host_array(weight)):
        return x @ weight
    kernel = few_rows_kernel()
    if kernel is not None and x.dtype == weight.dtype == np.float32 and weight.ndim == 2 \
            and weight.flags.c_contiguous:
        module, threads = kernel
        out = np.empty((rows, weight.shape[1]), dtype=np.float32)
        module.rows_matmul(np.ascontiguousarray(x), weight, out, threads)
        return out
    if rows == 1:
        return x @ weight
    out = np.empty((rows, weight.shape[-1]), dtype=np.result_type(x, weight))
    for row in range(rows):
        np.matmul(x[row:row + 1], weight, out=out[row:row + 1])
    return out


def masked_fill(x, mask, fill, *, inplace: bool):
    """``x`` with ``fill`` where ``mask`` is False; written into ``x`` when ``inplace`` and the backend allows."""
    if inplace and _takes_out(x):
        xp = array_namespace(x)
        xp.copyto(x, fill, where=xp.logical_not(mask))
        return x
    return array_namespace(x).where(mask, x, fill)


def to_numpy(array: Any) -> np.ndarray:
    """A NumPy copy (or view) of any backend's array."""
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)  # cupy.ndarray.get() copies to the host
    if callable(get) and is_cupy_array(array):
        return get()
    return np.asarray(array)


def cupy_status() -> tuple[bool, str]:
    """Whether CuPy can run here, and a sentence saying why not (or the GPU's name)."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency
    except ImportError:
        if getattr(sys, "frozen", False):
            return False, ("this is the CPU build; the GPU build (attnstudio-gpu: CuPy for NVIDIA GPUs, "
                              "CUDA 12) comes with each release")
        return False, "CuPy is not installed (pip install 'attnstudio[gpu]')"
    except Exception as error:  # noqa: BLE001 - a broken CUDA install can raise anything on import
        return False, f"CuPy failed to import: {error}"
    try:
        if not cupy.is_available():
            return False, "CuPy is installed but no usable CUDA GPU was found"
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as error:  # noqa: BLE001 - a broken driver raises anything: the GPU is then unusable, said in one line
        return False, f"CuPy cannot use the GPU: {error}"
    return True, name


@dataclass(frozen=True)
class Backend:
    """A chosen compute backend: its name, array module and a description."""

    name: str
    xp: Any
    description: str

    def asarray(self, array: Any, dtype: Any = None):
        """Move a host array onto this backend."""
        return self.xp.asarray(array, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued device work, so a timer read afterwards is honest."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    @contextlib.contextmanager
    def track_peak_memory(self) -> Iterator[dict]:
        """Measure the peak bytes allocated inside the block.

        NumPy: tracemalloc sees NumPy's allocations. CuPy: the memory pool's
        used bytes, sampled before and after (the pool keeps freed blocks, so
        its total after the call is an upper bound on the call's peak).
        """
        result = {"peak_bytes": 0}
        if self.name == "cupy":
            pool = self.xp.get_default_memory_pool()
            self.synchronize()
            pool.free_all_blocks()
            before = pool.used_bytes()
            try:
                yield result
            finally:
                self.synchronize()
                result["peak_bytes"] = max(0, pool.total_bytes() - before)
            return
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        try:
            yield result
        finally:
            _, peak = tracemalloc.get_traced_memory()
            result["peak_bytes"] = max(0, peak - start)
            if not was_tracing:
                tracemalloc.stop()


NUMPY = Backend("numpy", np, "NumPy (CPU)")


def resolve_backend(name: str = "auto") -> Backend:
    """The backend called ``name``; "auto" takes CuPy when a GPU is usable.

    Raises BackendUnavailable with a readable reason when "cupy" is asked for
    and cannot run.
    """
    if name not in BACKEND_NAMES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name == "numpy":
        return NUMPY
    usable, detail = cupy_status()
    if usable:
        import cupy  # noqa: PLC0415 - optional dependency, importable here (cupy_status said so)

        return Backend("cupy", cupy, f"CuPy (GPU: {detail})")
    if name == "cupy":
        raise BackendUnavailable(detail)
    return NUMPY


def is_out_of_memory(error: BaseException) -> bool:
    """True for host or device out-of-memory errors from NumPy or CuPy."""
    if isinstance(error, MemoryError):
        return True
    return type(error).__name__ in {"OutOfMemoryError", "CUDARuntimeError"} and "memory" in str(error).lower()
