"""Measured time and peak memory of attention kernels against sequence length.

Each point times a kernel (after one warm-up call, synchronising the device
before every timer read) and then measures its peak allocation in a separate
call, so memory tracking never slows the timing. Points that cannot fit are
skipped before they run; an out-of-memory error marks the point "OOM" and the
sweep goes on.
"""
from __future__ import annotations

import csv
import io
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from attnstudio.core.backend import DEVICE_BACKENDS, Backend, is_out_of_memory, resolve_backend
from attnstudio.core.kernels import attention_naive, attention_sliding_window, attention_tiled, tile_shape
from attnstudio.errors import InvalidSetting
from attnstudio.limits import LIMITS

KERNELS = ("naive", "tiled", "window")
DTYPES = {"float32": np.float32, "float64": np.float64}
DEFAULT_LENGTHS = tuple(64 * 2**i for i in range(8))  # 64 ... 8192
WINDOW_BLOCK = 256  # query rows per block of the sliding-window kernel


@dataclass
class ProfileConfig:
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    kernels: tuple[str, ...] = KERNELS
    backends: tuple[str, ...] = ("numpy",)
    heads: int = 8
    d_k: int = 64
    dtype: str = "float32"
    repeats: int = 3
    window: int = 64  # sliding-window kernel: neighbours on each side
    memory_budget_bytes: int | None = None  # None: what the device has free now

    def validate(self) -> ProfileConfig:
        if not self.lengths:
            raise InvalidSetting("a sweep needs at least one sequence length")
        for n in self.lengths:
            LIMITS["profile_length"].check(n)
        unknown = set(self.kernels) - set(KERNELS)
        if unknown or not self.kernels:
            raise InvalidSetting(f"kernels must be among {', '.join(KERNELS)}")
        if not self.backends or set(self.backends) - set(DEVICE_BACKENDS):
            raise InvalidSetting(f"backends must be among {', '.join(DEVICE_BACKENDS)}")
        for name in ("heads", "d_k", "repeats", "window"):
            LIMITS[f"profile_{name}"].check(getattr(self, name))
        if self.dtype not in DTYPES:
            raise InvalidSetting(f"dtype must be one of {', '.join(DTYPES)}")
        return self


@dataclass
class ProfilePoint:
    n: int
    kernel: str
    backend: str
    status: str  # "ok", "OOM", or "skipped: <why>"
    median_s: float | None = None
    peak_bytes: int | None = None
    theoretical_bytes: int = 0

    def validate(self) -> ProfilePoint:
        if not _is_int(self.n) or not 1 <= self.n <= LIMITS["profile_length"].high:
            raise InvalidSetting(f"a point's n must be an integer from 1 to {LIMITS['profile_length'].high}, "
                                 f"got {self.n!r:.40}")
        if self.kernel not in KERNELS or self.backend not in DEVICE_BACKENDS:
            raise InvalidSetting(f"a point has an unknown kernel or backend ({self.kernel!r:.40}/{self.backend!r:.40})")
        if not isinstance(self.status, str) or len(self.status) > 500:
            raise InvalidSetting("a point's status must be a short text")
        if self.median_s is not None and (isinstance(self.median_s, bool) or not isinstance(self.median_s, (int, float))
                                          or not math.isfinite(self.median_s) or self.median_s <= 0):
            raise InvalidSetting(f"a point's median_s must be a positive number of seconds, got {self.median_s!r:.40}")
        for name in ("peak_bytes", "theoretical_bytes"):
            value = getattr(self, name)
            if (value is not None or name == "theoretical_bytes") and (not _is_int(value) or not 0 <= value < 2**63):
                raise InvalidSetting(f"a point's {name} must be a byte count, got {value!r:.40}")
        return self


@dataclass
class ProfileResult:
    config: ProfileConfig
    points: list[ProfilePoint] = field(default_factory=list)
    cancelled: bool = False

    def series(self, kernel: str, backend: str) -> list[ProfilePoint]:
        return [p for p in self.points if p.kernel == kernel and p.backend == backend and p.status == "ok"]

    def fit_min_n(self, min_n: int = 512) -> int:
        """The smallest n used in fits: ``min_n`` (where small-n overheads have faded) if at least two
        measured lengths reach it, else every length."""
        lengths = {p.n for p in self.points if p.status == "ok"}
        return min_n if len([n for n in lengths if n >= min_n]) >= 2 else min(lengths, default=0)

    def exponents(self, min_n: int = 512) -> dict[str, dict[str, float | None]]:
        """Fitted log-log slopes of time and peak memory per "kernel/backend" over n >= fit_min_n(min_n)."""
        fitted = {}
        low = self.fit_min_n(min_n)
        for kernel in self.config.kernels:
            for backend in self.config.backends:
                points = [p for p in self.series(kernel, backend) if p.n >= low]
                fitted[f"{kernel}/{backend}"] = {
                    "time": fit_exponent([p.n for p in points], [p.median_s for p in points]),
                    "memory": fit_exponent([p.n for p in points], [p.peak_bytes for p in points]),
                }
        return fitted

    def to_json_dict(self) -> dict:
        return {"config": {**asdict(self.config), "lengths": list(self.config.lengths),
                           "kernels": list(self.config.kernels), "backends": list(self.config.backends)},
                "points": [asdict(p) for p in self.points], "exponents": self.exponents(),
                "cancelled": self.cancelled}

    @classmethod
    def from_json_dict(cls, data: dict, *, max_points: int = 10_000) -> ProfileResult:
        """Rebuild saved results, checking every field (a session file may hold anything): InvalidSetting."""
        try:
            config = dict(data["config"])
            for key in ("lengths", "kernels", "backends"):
                if not isinstance(config[key], (list, tuple)):
                    raise InvalidSetting(f"{key} must be a list")
                config[key] = tuple(config[key])
            budget = config.get("memory_budget_bytes")
            if budget is not None and (not _is_int(budget) or not 0 <= budget < 2**63):
                raise InvalidSetting("memory_budget_bytes must be a byte count")
            points = data["points"]
            if not isinstance(points, list) or len(points) > max_points:
                raise InvalidSetting(f"points must be a list of at most {max_points}")
            result = cls(ProfileConfig(**config).validate(), [ProfilePoint(**p).validate() for p in points],
                         bool(data.get("cancelled")))
        except InvalidSetting as error:
            raise InvalidSetting(f"profiler results: {error}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidSetting(f"profiler results are malformed ({type(error).__name__}: {error})") from None
        return result

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["n", "kernel", "backend", "status", "median_s", "peak_bytes", "theoretical_bytes"])
        for p in self.points:
            writer.writerow([p.n, p.kernel, p.backend, p.status, "" if p.median_s is None else f"{p.median_s:.6g}",
                             "" if p.peak_bytes is None else p.peak_bytes, p.theoretical_bytes])
        return buffer.getvalue()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fit_exponent(lengths, values) -> float | None:
    """Least-squares slope of log(value) against log(n); None with fewer than 2 distinct usable lengths."""
    pairs = [(n, v) for n, v in zip(lengths, values, strict=True) if v is not None and v > 0]
    if len({n for n, _ in pairs}) < 2:
        return None
    log_n, log_value = np.log(np.array(pairs, dtype=np.float64)).T  # (points,) each
    slope, _intercept = np.polyfit(log_n, log_value, deg=1)
    return float(slope)


def theoretical_bytes(kernel: str, n: int, heads: int, d_k: int, itemsize: int, window: int,
                      xp=np) -> int:
    """What a kernel must allocate beyond its inputs: the output plus its score buffers."""
    output = heads * n * d_k * itemsize
    tile_q, tile_k = tile_shape(xp, heads)
    if kernel == "naive":
        return output + 2 * heads * n * n * itemsize  # scores and weights, (heads, n, n) each
    if kernel == "tiled":
        return output + 3 * heads * min(n, tile_q) * min(n, tile_k) * itemsize
    return output + 2 * heads * min(n, WINDOW_BLOCK) * min(n, WINDOW_BLOCK + 2 * window) * itemsize


def available_bytes(backend: Backend) -> int:
    """Free memory where the backend allocates (host RAM for NumPy, device memory for CuPy)."""
    if backend.name == "cupy":
        free, _ = backend.xp.cuda.runtime.memGetInfo()
        return int(free) + int(backend.xp.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _kernel(name: str, window: int) -> Callable:
    if name == "naive":
        return attention_naive
    if name == "tiled":
        return attention_tiled  # tiles sized for the backend (kernels.tile_shape)
    return lambda q, k, v: attention_sliding_window(q, k, v, width=window, block_q=WINDOW_BLOCK)


def measure_point(backend: Backend, kernel: str, n: int, config: ProfileConfig) -> ProfilePoint:
    """Time and measure one kernel at one length (inputs are made first and not counted)."""
    dtype = DTYPES[config.dtype]
    itemsize = np.dtype(dtype).itemsize
    need = theoretical_bytes(kernel, n, config.heads, config.d_k, itemsize, config.window, backend.xp)
    inputs = 3 * config.heads * n * config.d_k * itemsize
    budget = config.memory_budget_bytes if config.memory_budget_bytes is not None else available_bytes(backend)
    point = ProfilePoint(n, kernel, backend.name, "ok", theoretical_bytes=need)
    if 1.25 * (need + inputs) > budget:
        point.status = f"skipped: needs ~{(need + inputs) / 2**30:.1f} GiB, {budget / 2**30:.1f} GiB free"
        return point
    run = _kernel(kernel, config.window)
    q = k = v = None
    try:
        rng = np.random.default_rng(n)
        q, k, v = (backend.asarray(rng.standard_normal((config.heads, n, config.d_k)).astype(dtype)) for _ in range(3))
        run(q, k, v)  # warm-up: first-call costs (kernel compilation, page faults) are not timed
        backend.synchronize()
        times = []
        for _ in range(config.repeats):
            started = time.perf_counter()
            run(q, k, v)
            backend.synchronize()
            times.append(time.perf_counter() - started)
        with backend.track_peak_memory() as memory:
            run(q, k, v)
        point.median_s = statistics.median(times)
        point.peak_bytes = int(memory["peak_bytes"])
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        point.status = "OOM"
    finally:
        del q, k, v
    return point


def run_profile(config: ProfileConfig, *, progress: Callable[[int, int, ProfilePoint], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> ProfileResult:
    """Sweep every (backend, kernel, n); ``progress(done, total, point)`` after each point.

    ``cancelled()`` is checked between points; a cancelled sweep returns what it has.
    """
    config.validate()
    backends = [resolve_backend(name) for name in config.backends]
    result = ProfileResult(config)
    total = len(backends) * len(config.kernels) * len(config.lengths)
    for backend in backends:
        for kernel in config.kernels:
            for n in sorted(config.lengths):
                if cancelled is not None and cancelled():
                    result.cancelled = True
                    return result
                point = measure_point(backend, kernel, n, config)
                result.points.append(point)
                if progress is not None:
                    progress(len(result.points), total, point)
    return result
