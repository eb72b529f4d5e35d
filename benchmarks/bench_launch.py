"""Start-up and model loading as a user meets them: launch -> first painted SmolLM2 heatmap, and the event
loop's longest stall during the start-up and during a model switch MiniLM -> SmolLM2.

Launch: a real process (`python -m attnstudio --selftest shot.png --model smollm2`), timed from the process's
own start (its start time in /proc: the interpreter and every import count) to the first heatmap painted, on a
warm cache: the float32 SmolLM2 cache and the compiled .pyc files exist (one untimed launch writes them, in this
benchmark's own folders, as an installed app has them). Median of LAUNCH_REPEATS, with the child's CPU time.

Stall: a 5 ms QTimer heartbeat (attnstudio.ui.heartbeat); its longest gap is the longest the window could not
repaint or take a key. Goals: first heatmap <= 3 s after launch (issue 14); no stall > 100 ms (issue 20).
Model switch: the model menu's choice, in this process; SmolLM2 not loaded yet (warm float32 cache), and once
from a cold cache (the GGUF dequantized).

Run: PYTHONPATH=. python benchmarks/bench_launch.py   (BENCH_LAUNCH_REPEATS=5)
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import write  # noqa: E402

REPEATS = int(os.environ.get("BENCH_LAUNCH_REPEATS", "5"))
WORK = Path(tempfile.gettempdir()) / "attnstudio-bench-launch"  # its model cache and .pyc files, kept warm


def _launch_env(checkout: str | None = None) -> dict:
    """The child's environment: this benchmark's warm caches; ``checkout``: run that attnstudio's code instead."""
    env = {**os.environ, "ATTNSTUDIO_CACHE_DIR": str(WORK / ("cache-before" if checkout else "cache")),
           "PYTHONPYCACHEPREFIX": str(WORK / "pycache"), "QT_QPA_PLATFORM": "offscreen"}
    if checkout:
        env["PYTHONPATH"] = checkout
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def launch_once(folder: str, checkout: str | None = None) -> dict:
    """One launch: the selftest's numbers, the wall time to exit and the child's CPU time. An older checkout's
    selftest counts its time from an import, not the process's start, and reports no stall: compare the process
    wall and CPU times to exit with those."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "attnstudio", "--selftest", f"{folder}/shot.png", "--model", "smollm2"]
    done = subprocess.run(command, capture_output=True, check=False, text=True, timeout=300, env=_launch_env(checkout))
    wall_ms = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    painted = re.search(r"painted (\d+) ms", done.stdout)
    stall = re.search(r"longest stall (\d+) ms", done.stdout)
    resident = re.search(r"resident (\d+) MiB", done.stdout)
    if painted is None or (stall is None and checkout is None):
        raise SystemExit(f"the selftest did not report a painted heatmap:\n{done.stdout}\n{done.stderr[-3000:]}")
    return {"painted_ms": float(painted.group(1)), "stall_ms": float(stall.group(1)) if stall else None,
            "resident_mib": float(resident.group(1)) if resident else None, "process_wall_ms": wall_ms,
            "process_cpu_ms": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000,
            "load_average": os.getloadavg()[0]}


def launches(repeats: int = REPEATS, before: str | None = None) -> tuple[list[dict], list[dict]]:
    """(this checkout's launches, ``before``'s), alternating so both meet the same load."""
    runs, before_runs = [], []
    with tempfile.TemporaryDirectory() as folder:
        for checkout in (None, before) if before else (None,):
            launch_once(folder, checkout)  # untimed: writes the float32 cache and the .pyc files if they are missing
        for _ in range(repeats):
            runs.append(launch_once(folder))
            if before:
                before_runs.append(launch_once(folder, before))
    return runs, before_runs


def model_switch(cold: bool) -> dict:
    """MiniLM on screen -> SmolLM2 chosen in the model menu -> its heatmap painted: the time, the longest stall."""
    from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: PLC0415 - Qt only for this measurement
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    from attnstudio.models.registry import load_model_cached  # noqa: PLC0415
    from attnstudio.session import Session  # noqa: PLC0415
    from attnstudio.ui.heartbeat import Heartbeat  # noqa: PLC0415
    from attnstudio.ui.main_window import MainWindow  # noqa: PLC0415

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ATTNSTUDIO_CACHE_DIR"] = f"{folder}/cache" if cold else str(WORK / "cache")
        load_model_cached.cache_clear()
        window = MainWindow(Session(model="minilm", backend="numpy"),
                            settings=QSettings(f"{folder}/s.ini", QSettings.IniFormat), restore=False)
        window.resize(1024, 700)
        window.show()
        loop = QEventLoop()
        window.results.changed.connect(loop.quit)
        guard = QTimer(singleShot=True, interval=300_000)
        guard.timeout.connect(loop.quit)

        def wait_for(model: str) -> None:
            guard.start()
            while window.results.result is None or window.results.result.model_name != model:
                loop.exec()
                if not guard.isActive():
                    raise SystemExit(f"no {model} result within 300 s (last error: {window.last_error or 'none'})")

        wait_for("minilm")
        for _ in range(20):  # let the first paint and the views' summaries settle
            app.processEvents()
            time.sleep(0.01)
        heartbeat = Heartbeat()
        combo = window.controls.model
        index = combo.findData("smollm2")
        heartbeat.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        combo.setCurrentIndex(index)
        combo.activated.emit(index)
        loading_line = window.statusBar().currentMessage()
        wait_for("smollm2")
        window.views["heatmap"].canvas.viewport().repaint()
        elapsed_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000
        stall_ms = heartbeat.stop()
        window.close()
        app.processEvents()
        os.environ["ATTNSTUDIO_CACHE_DIR"] = str(WORK / "cache")
    return {"cold_cache": cold, "switch_ms": elapsed_ms, "switch_cpu_ms": cpu_ms, "stall_ms": stall_ms,
            "ticks": heartbeat.ticks, "status_while_loading": loading_line, "load_average": os.getloadavg()[0]}


def main() -> None:
    """--before DIR: also launch another checkout of attnstudio (e.g. main before this change), alternating."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="DIR", help="a checkout of attnstudio to compare launches with")
    args = parser.parse_args()
    runs, before_runs = launches(before=args.before)
    median = {key: statistics.median(run[key] for run in runs) for key in ("painted_ms", "stall_ms", "process_cpu_ms")}
    def each(key: str, digits: int = 0) -> str:
        return ", ".join(f"{run[key]:.{digits}f}" for run in runs)

    print(f"launch -> first SmolLM2 heatmap painted (warm cache), median of {len(runs)}: {median['painted_ms']:.0f} ms "
          f"(each: {each('painted_ms')}); child CPU to exit {median['process_cpu_ms']:.0f} ms (each: "
          f"{each('process_cpu_ms')}); longest event-loop stall {median['stall_ms']:.0f} ms "
          f"(each: {each('stall_ms')}); load average {each('load_average', 1)} on {os.cpu_count()} cores")
    exits = {key: statistics.median(run[key] for run in runs) for key in ("process_wall_ms", "process_cpu_ms")}
    before_exits = {key: statistics.median(run[key] for run in before_runs)
                    for key in ("process_wall_ms", "process_cpu_ms")} if before_runs else None
    line = (f"launch -> heatmap -> exit, whole process, median: wall {exits['process_wall_ms']:.0f} ms, "
            f"CPU {exits['process_cpu_ms']:.0f} ms")
    if before_exits:
        line += (f"; before ({args.before}): wall {before_exits['process_wall_ms']:.0f} ms, "
                 f"CPU {before_exits['process_cpu_ms']:.0f} ms")
    print(line)
    switches = [model_switch(cold=False) for _ in range(3)] + [model_switch(cold=True)]
    for switch in switches:
        print(f"switch MiniLM -> SmolLM2 ({'cold cache: GGUF dequantized' if switch['cold_cache'] else 'warm cache'}): "
              f"{switch['switch_ms']:.0f} ms wall, {switch['switch_cpu_ms']:.0f} ms CPU to the painted heatmap; "
              f"longest event-loop stall {switch['stall_ms']:.0f} ms ({switch['ticks']} ticks); status line "
              f"{switch['status_while_loading']!r}; load average {switch['load_average']:.1f}")
    write("launch", {"launches": runs, "launch_medians": median, "switches": switches, "before": args.before,
                     "before_launches": before_runs, "process_medians": exits, "before_process_medians": before_exits,
                     "targets": {"painted_ms": 3000, "stall_ms": 100}})


if __name__ == "__main__":
    main()
