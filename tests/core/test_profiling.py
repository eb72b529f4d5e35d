"""The profiler's measurements, fits, skips, OOM handling and cancel."""
from __future__ import annotations

import json
import math

import pytest

from attnstudio.core import profiling
from attnstudio.core.backend import cupy_status
from attnstudio.core.kernels import tile_shape
from attnstudio.core.profiling import ProfileConfig, ProfileResult, fit_exponent, run_profile
from attnstudio.errors import InvalidSetting
from tests.core.test_cli import run_cli


def test_fit_exponent_recovers_a_power_law():
    n = [64, 128, 256, 512]
    assert fit_exponent(n, [3 * x**2 for x in n]) == pytest.approx(2.0)
    assert fit_exponent(n, [x**1.1 for x in n]) == pytest.approx(1.1)
    assert fit_exponent([64], [1.0]) is None
    assert fit_exponent(n, [None, 1.0, None, None]) is None


def small(**overrides):
    return ProfileConfig(**{"lengths": (32, 64, 128, 256), "heads": 2, "d_k": 16, "repeats": 1, "window": 8,
                            **overrides})


def test_a_small_sweep_measures_every_point_and_memory_scales_as_expected():
    result = run_profile(small(lengths=(512, 1024, 2048, 4096), heads=1), progress=None)
    assert len(result.points) == 12 and all(p.status == "ok" for p in result.points)
    assert all(p.median_s > 0 and p.peak_bytes > 0 for p in result.points)
    naive = {p.n: p.peak_bytes for p in result.series("naive", "numpy")}
    # the naive kernel holds (heads, n, n) scores: at least the weights themselves are measured
    assert naive[1024] >= 1024 * 1024 * 4
    # past the tile size (256 x 1024) the tiled kernel only grows by its (heads, n, d_k) output
    fitted = result.exponents(min_n=1024)
    assert 1.7 <= fitted["naive/numpy"]["memory"] <= 2.3
    assert fitted["tiled/numpy"]["memory"] <= 1.2


def test_progress_reports_each_point():
    seen = []
    run_profile(small(kernels=("tiled",)), progress=lambda done, total, point: seen.append((done, total, point.n)))
    assert seen == [(1, 4, 32), (2, 4, 64), (3, 4, 128), (4, 4, 256)]


def test_points_that_cannot_fit_are_skipped_before_running():
    result = run_profile(small(kernels=("naive",), memory_budget_bytes=600_000))
    statuses = [p.status for p in result.points]
    assert statuses[0] == "ok" and statuses[-1].startswith("skipped: needs")


def test_out_of_memory_marks_the_point_and_the_sweep_continues(monkeypatch):
    real = profiling._kernel

    def flaky(name, window):
        kernel = real(name, window)

        def run(q, k, v):
            if q.shape[1] == 64:
                raise MemoryError("simulated")
            return kernel(q, k, v)
        return run

    monkeypatch.setattr(profiling, "_kernel", flaky)
    result = run_profile(small(kernels=("naive",)))
    assert [p.status for p in result.points] == ["ok", "OOM", "ok", "ok"]


def test_cancel_keeps_partial_results():
    calls = []
    result = run_profile(small(), progress=lambda *a: calls.append(1), cancelled=lambda: len(calls) >= 3)
    assert result.cancelled and len(result.points) == 3


def test_results_round_trip_through_json_and_csv():
    result = run_profile(small(kernels=("window",)))
    again = ProfileResult.from_json_dict(json.loads(json.dumps(result.to_json_dict())))
    assert again.points == result.points and again.config == result.config
    rows = result.to_csv().splitlines()
    assert rows[0].startswith("n,kernel,backend") and len(rows) == 5


def test_bad_configs_are_refused():
    for bad in (small(lengths=()), small(kernels=("magic",)), small(heads=0), small(dtype="int8"),
                small(backends=("tpu",))):
        with pytest.raises(InvalidSetting):
            bad.validate()


def test_tiled_memory_stays_linear_where_naive_is_quadratic():
    need = {k: [profiling.theoretical_bytes(k, n, 8, 64, 4, 64) for n in (4096, 8192)] for k in profiling.KERNELS}
    assert need["naive"][1] / need["naive"][0] > 3.5
    assert need["tiled"][1] / need["tiled"][0] < 2.1
    assert math.isclose(need["window"][1] / need["window"][0], 2.0, rel_tol=0.3)


def test_profile_cli_prints_a_table_and_writes_json_and_csv(tmp_path):
    done = run_cli("profile", "--n", "64,128,256,512,1024", "--kernels", "naive,tiled", "--heads", "2", "--d-k", "16",
                   "--repeats", "1", "--json", str(tmp_path / "p.json"), "--csv", str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    assert "fitted exponents" in done.stdout and "naive/numpy: time" in done.stdout
    assert "10/10" in done.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    assert len(data["points"]) == 10 and set(data["exponents"]) == {"naive/numpy", "tiled/numpy"}
    assert (tmp_path / "p.csv").read_text().count("\n") == 11


@pytest.mark.parametrize("args,message", [(["--n", "64,x"], "comma-separated integers"),
                                          (["--kernels", "magic"], "kernels must be"),
                                          (["--heads", "0"], "heads must be")])
def test_profile_cli_refuses_bad_options(args, message):
    done = run_cli("profile", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


GPU_USABLE, GPU_REASON = cupy_status()


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_USABLE, reason=f"no CUDA GPU here: {GPU_REASON}")
def test_a_gpu_sweep_times_and_measures_device_memory():
    import cupy  # noqa: PLC0415 - optional: only where a CUDA GPU is usable


    result = run_profile(small(lengths=(2048, 4096, 8192, 16384), heads=4, d_k=64, backends=("cupy",)), progress=None)
    assert all(p.status == "ok" and p.median_s > 0 and p.peak_bytes > 0 for p in result.points)
    naive = {p.n: p.peak_bytes for p in result.series("naive", "cupy")}
    tiled = {p.n: p.peak_bytes for p in result.series("tiled", "cupy")}
    assert naive[16384] >= 4 * 16384 * 16384 * 4, "the device memory pool sees the (heads, n, n) weights"
    assert 1.7 <= result.exponents(min_n=2048)["naive/cupy"]["memory"] <= 2.3
    # GPU tiles are large (a few launches per tile), but bounded: the tiled kernel keeps within its
    # estimate (three tiles and the output) at every n, far below the naive kernel's n^2
    assert max(tile_shape(cupy, 4)) <= 4096
    for n, peak in tiled.items():
        assert peak <= 1.1 * profiling.theoretical_bytes("tiled", n, 4, 64, 4, 8, cupy), n
    assert tiled[16384] < naive[16384] / 4
