"""Long documents: SmolLM2 on an 8,192-token text in bounded memory (goal: resident <= 2.5 GiB with the
weights), the forward pass, switching layer/head (goal <= 1 s), zooming into a 256 x 256 region (goal <= 200 ms);
MiniLM at 512 tokens, every weight kept against the long mode (goal: <= 1/4 of the memory); and in the app,
the longest event-loop stall while the long forward pass runs with its progress bar (goal < 100 ms), less the
time within it that every CPU of this shared machine was stopped (benchmarks/machine_stalls.py: the hypervisor
freezes every process here now and then); the raw gap is printed beside it.

Each measurement runs in a fresh interpreter, so resident memory is that of one model and one text. Every
part records the load average and this process's CPU time beside wall time (the machine is shared).
Switching is timed to the refined picture painted (the view's canvas repainted after the 512 x 512 summary
arrived). Where a CUDA GPU is usable, 32,768 tokens would be measured there; the JSON says plainly when none is.
BENCH_LONG_TOKENS=2048 measures a shorter text on a busy machine.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write
from machine_stalls import MachineStalls
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from attnstudio.core.backend import cupy_status
from attnstudio.core.long_attention import SUMMARY_CELLS
from attnstudio.engine import Engine
from attnstudio.models.registry import load_model_cached
from attnstudio.session import Session
from attnstudio.ui.main_window import MainWindow

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # under xvfb-run, QT_QPA_PLATFORM=xcb shows a real window
HERE = Path(__file__).resolve().parent

TOKENS = int(os.environ.get("BENCH_LONG_TOKENS", "8192"))
PROSE = [Path("/usr/share/common-licenses/GPL-3"), Path("/usr/share/common-licenses/Apache-2.0"),
         Path("/usr/share/common-licenses/GFDL-1.3")]
GIB = 2**30


def long_text(tokenizer, tokens: int) -> str:
    """English prose (the licences every Debian system ships), else this project's sources, cut to ``tokens``."""
    parts = [path.read_text(encoding="utf-8") for path in PROSE if path.is_file()]
    parts += [path.read_text(encoding="utf-8") for path in sorted((HERE.parent / "attnstudio").rglob("*.py"))]
    text = ""
    for part in parts:
        text += part + "\n\n"
        if len(tokenizer.encode(text).ids) >= tokens:
            break
    ids = tokenizer.encode(text).ids[:tokens]
    return tokenizer._tokenizer.decode(ids)


def resident_gib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_s() -> float:
    """CPU time of this process, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


class Clock:
    """Wall and CPU seconds of a stretch of work, with the load average when it ended."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_s()

    def stop(self) -> dict:
        return {"wall_s": time.perf_counter() - self.wall, "cpu_s": cpu_s() - self.cpu, "loadavg": load_average()}


def smollm2_core() -> dict:
    """The engine alone: forward, then a head's 512 x 512 summaries (what switching draws), then 256 x 256 zooms."""
    engine = Engine()
    model = load_model_cached("smollm2")
    text = long_text(model.tokenizer, TOKENS)
    loaded = resident_gib()
    progress = []
    clock = Clock()
    result = engine.compute(Session(text=text, model="smollm2"), progress=lambda done, total: progress.append(
        time.perf_counter() - clock.wall))
    forward = clock.stop()
    long = result.long
    n = len(result.query_tokens)
    switches = []
    for layer, head in [(0, 0), (14, 4), (29, 8), (7, 2), (22, 6)]:
        clock = Clock()
        long.summary(layer, head, "max", 512)
        long.summary(layer, head, "mean", 512)
        switches.append(clock.stop())
    zooms = []
    for row, col in [(n - 256, n - 512), (n // 2, n // 4), (4000 % n, 0)]:
        clock = Clock()
        long.weights(29, 8, (row, row + 256), (col, col + 256))
        zooms.append(clock.stop())
    return {"tokens": n, "forward": forward, "forward_s": forward["wall_s"], "layer_progress_s": progress,
            "switch_head": switches, "switch_head_s": [s["wall_s"] for s in switches], "zoom_256": zooms,
            "zoom_256_s": [z["wall_s"] for z in zooms], "kept_mib": long.nbytes() / 2**20,
            "resident_after_load_gib": loaded, "resident_gib": resident_gib(), "peak_resident_gib": peak_gib(),
            "notices": result.notices}


def minilm(mode: str) -> dict:
    """MiniLM on a 512-token text: every weight kept (today's path, with the app's host copy) or the long mode."""
    engine = Engine()
    model = load_model_cached("minilm")
    text = long_text(model.tokenizer, 510)
    before = resident_gib()
    clock = Clock()
    result = engine.compute(Session(text=text, model="minilm"), long=mode == "long")
    result.precompute_views()  # what the compute worker does before the app draws
    timing = clock.stop()
    if result.long is not None:
        held = result.long.nbytes()
    else:
        held = sum(array.nbytes for trace in result.forward.traces for array in vars(trace).values())
        held += result.attentions().nbytes
    return {"mode": mode, "tokens": len(result.query_tokens), "seconds": timing["wall_s"], "timing": timing,
            "result_mib": held / 2**20,
            "resident_added_mib": (resident_gib() - before) * 1024, "resident_gib": resident_gib(),
            "peak_resident_gib": peak_gib()}


def gui_stall() -> dict:
    """The app on the long text: the longest gap between ticks of a 10 ms timer from the edit until the result is
    drawn (the forward pass in its worker, the progress bar counting layers, the result's arrival), then switching
    layer/head until the refined picture is painted, and zooming into 256 x 256 tokens until its weights are
    painted, as a user does."""
    app = QApplication.instance() or QApplication([])
    text = long_text(load_model_cached("smollm2").tokenizer, TOKENS)
    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(Session(backend="numpy"), settings=QSettings(f"{folder}/s.ini", QSettings.IniFormat),
                            restore=False)
        window.resize(1024, 700)
        window.show()
        while window.results.result is None:
            app.processEvents()
        window.session_model.update(model="smollm2", text="A short text first: loading the model is not measured.")
        while window.results.result.model_name != "smollm2":
            app.processEvents()
            time.sleep(0.002)
        for _ in range(50):  # the short result drawn and settled
            app.processEvents()
            time.sleep(0.005)
        progress, clock = [], QElapsedTimer()
        window.controller.progress.connect(lambda done, total: progress.append((done, clock.elapsed())))
        clock.start()
        # the control: the same ticks for 10 s with the app idle, the short result on screen (what the machine
        # alone does to an event loop)
        idle = Ticks(clock).start()
        loop = QEventLoop()
        QTimer.singleShot(10_000, loop.quit)
        loop.exec()
        idle = idle.stop()
        # Qt's own event loop runs meanwhile, as in the app: it takes the GIL only for Python slots and paints (a
        # processEvents() loop in Python would take it every few milliseconds, against the busy worker)
        arrived = {}

        def check():
            if window.results.result is not None and window.results.result.long is not None and not arrived:
                arrived.update(result_ms=clock.elapsed(), forward=forward.stop(), resident=resident_gib())
                QTimer.singleShot(1000, loop.quit)  # one second more: the result's first paint is measured too
        checker = QTimer(interval=50)
        checker.timeout.connect(check)
        ticks = Ticks(clock).start()
        checker.start()
        clock.restart()
        forward = Clock()
        window.session_model.update(text=text)
        loop.exec()
        checker.stop()
        stalls = ticks.stop()
        forward, result_ms, resident_at_result = arrived["forward"], arrived["result_ms"], arrived["resident"]
        panel = window.views["heatmap"].long_panel
        switches = []
        for layer, head in [(14, 4), (29, 8), (7, 2), (22, 6)]:
            clock_switch = Clock()
            window.session_model.update(layer=layer, head=head)
            app.processEvents()
            first_ms = 1e3 * (time.perf_counter() - clock_switch.wall)  # drawn from the forward pass's summaries
            while not panel.summary_final:
                app.processEvents()
                time.sleep(0.002)
            panel.canvas.viewport().repaint()  # the refined 512 x 512 picture painted
            switch = {**clock_switch.stop(), "first_picture_ms": first_ms, "layer": layer, "head": head}
            switch["right_head"] = shows_head(panel, layer, head)
            switches.append(switch)
        n = panel.n
        zooms = []
        for row, col in [(n - 256, n - 512), (n // 2, n // 4)]:
            clock_zoom = Clock()
            panel.plot.getViewBox().setRange(xRange=(col, col + 256), yRange=(row, row + 256), padding=0)
            panel._draw_detail()  # what the settle timer does once the wheel stops
            while panel.detail is None or panel.detail_region != panel.visible_region():
                app.processEvents()
                time.sleep(0.001)
            panel.canvas.viewport().repaint()  # the exact weights of the region painted
            zooms.append(clock_zoom.stop())
        screenshots = save_screenshots(app, window, panel)
        window.controller.shutdown()
    return {"tokens": n, "forward": forward, "forward_s": forward["wall_s"], "progress_updates": len(progress),
            **stalls, "idle": idle,
            "progress_at_ms": [at for _, at in progress], "result_at_ms": result_ms,
            "switch": switches, "switch_head_ms": max(s["first_picture_ms"] for s in switches),
            "switch_head_refined_s": [s["wall_s"] for s in switches], "zoom": zooms,
            "zoom_256_ms": [1e3 * z["wall_s"] for z in zooms], "screenshots": screenshots,
            "resident_at_result_gib": resident_at_result, "peak_resident_gib": peak_gib()}


class Ticks:
    """The gaps between ticks of a 10 ms timer while the event loop runs, with the machine's stops beside them
    (benchmarks/machine_stalls.py): ``ticks = Ticks(clock).start()`` ... ``summary = ticks.stop()``."""

    def __init__(self, clock: QElapsedTimer):
        self.clock, self.gaps = clock, []
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)

    def start(self) -> Ticks:
        self.machine = MachineStalls().start()
        self.last = time.monotonic()
        self.timer.start()
        return self

    def _tick(self) -> None:  # (gap in ms, ms on the clock, the gap's [start, end] on CLOCK_MONOTONIC)
        now = time.monotonic()
        self.gaps.append(((now - self.last) * 1e3, self.clock.elapsed(), self.last, now))
        self.last = now

    def stop(self) -> dict:
        """Each gap, and each less the time every CPU of the machine was stopped (its real-time witnesses could
        not run); the longest of both, the 99th percentile, the gaps over 50 ms."""
        self.timer.stop()
        machine = self.machine
        machine.stop()
        ticks = [{"gap_ms": gap, "at_ms": at, "machine_stopped_ms": machine.stopped_ms(start, end),
                  "steal_ms": machine.steal_ms(start, end), "monotonic": [start, end]}
                 for gap, at, start, end in self.gaps[1:]]
        for tick in ticks:
            tick["own_ms"] = max(0.0, tick["gap_ms"] - tick["machine_stopped_ms"])
        stalls = sorted(tick["gap_ms"] for tick in ticks)
        worst, worst_own = max(ticks, key=lambda t: t["gap_ms"]), max(ticks, key=lambda t: t["own_ms"])
        return {"max_stall_ms": stalls[-1], "p99_stall_ms": stalls[int(0.99 * (len(stalls) - 1))],
                "ticks": len(stalls), "worst_stall": worst, "max_own_stall_ms": worst_own["own_ms"],
                "worst_own_stall": worst_own, "witnesses": machine.available, "witnesses_realtime": machine.realtime,
                "machine_stopped_ms": machine.total_stopped_ms(), "witness_runs": machine.witnesses,
                "stalls_over_50_ms": [tick for tick in ticks if tick["gap_ms"] > 50]}


def stall_words(gui: dict) -> str:
    """The app's longest event-loop stall (less the machine's), and the raw one with what the machine did."""
    worst, own, idle = gui["worst_stall"], gui["worst_own_stall"], gui["idle"]
    raw = (f"{gui['ticks']} ticks of 10 ms, 99th percentile {gui['p99_stall_ms']:.0f} ms, "
           f"{len(gui['stalls_over_50_ms'])} gaps over 50 ms, {gui['progress_updates']} progress updates")
    if not gui["witnesses"]:
        return f"longest event-loop gap {worst['gap_ms']:.0f} ms from the edit to the result drawn ({raw})"
    return (f"longest event-loop gap less the machine's stops {own['own_ms']:.0f} ms (a {own['gap_ms']:.0f} ms gap at "
            f"{own['at_ms'] / 1e3:.1f} s); longest raw gap {worst['gap_ms']:.0f} ms at {worst['at_ms'] / 1e3:.1f} s, "
            f"every CPU stopped {worst['machine_stopped_ms']:.0f} ms of it (steal booked per CPU "
            f"{', '.join(f'{ms:.0f}' for ms in worst['steal_ms'])} ms); {raw}; the CPUs' "
            f"{'real-time' if gui['witnesses_realtime'] else 'normal-priority'} witnesses were stopped "
            f"{', '.join(f'{ms / 1e3:.1f}' for ms in gui['machine_stopped_ms'])} s in all. The control, the app "
            f"idle for {idle['ticks'] / 100:.0f} s before: longest gap {idle['max_stall_ms']:.0f} ms, "
            f"{idle['worst_stall']['machine_stopped_ms']:.0f} ms of it the machine's; less the machine's "
            f"{idle['max_own_stall_ms']:.0f} ms")


def shows_head(panel, layer: int, head: int) -> bool:
    """Whether the picture on screen is the 512 x 512 block max (or mean) of ``layer``, ``head``."""
    long = panel.result.long
    expected, _ = long.summary(layer, head, panel.kind_name, SUMMARY_CELLS)
    shown = panel.summary_image.image
    masked = long.tiles_masked(panel.tile)
    if masked is not None:
        shown, expected = np.where(masked, 0, shown), np.where(masked, 0, expected)
    return bool(shown.shape == expected.shape and np.array_equal(shown, expected))


def gpu_status() -> dict:
    """32,768 tokens are measured where a CUDA GPU is lent; say plainly when none is (or why it cannot be)."""
    usable, detail = cupy_status()
    if not usable:
        return {"available": False, "detail": detail, "measured_32768": False,
                "note": f"no GPU lent: 32,768 tokens not measured ({detail})"}
    return {"available": True, "detail": detail, "measured_32768": False,
            "note": f"a CUDA GPU is usable ({detail}), but the long-document pass computes with NumPy only and "
                    "SmolLM2's context is 8,192 tokens: 32,768 tokens were not measured"}


def save_screenshots(app, window, panel) -> list[str]:
    """The window at 1024 x 700 in both themes: the whole heatmap, a 64 x 64-token zoom, the heads grid."""
    def settle(until=lambda: True):
        for _ in range(2000):
            app.processEvents()
            time.sleep(0.005)
            if until():
                break
        for _ in range(40):
            app.processEvents()
            time.sleep(0.005)

    saved = []
    for theme in ("light", "dark"):
        if window.theme != theme:
            window.toggle_theme()
        window.session_model.update(view="heatmap", layer=5, head=3)
        panel.show_all()
        settle(lambda: panel.summary_final and panel.detail is None)
        saved.append(window_shot(window, f"long_heatmap_{theme}.png"))
        panel.plot.getViewBox().setRange(xRange=(0, 64), yRange=(panel.n - 64, panel.n), padding=0)
        settle(lambda: panel.detail is not None)
        saved.append(window_shot(window, f"long_zoom_{theme}.png"))
        window.session_model.update(view="heads")
        settle()
        saved.append(window_shot(window, f"long_heads_{theme}.png"))
    return saved


def window_shot(window, name: str) -> str:
    path = HERE / "results" / name
    path.parent.mkdir(exist_ok=True)
    if not window.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    return str(path)


PARTS = {"smollm2": smollm2_core, "minilm-dense": lambda: minilm("dense"), "minilm-long": lambda: minilm("long"),
         "gui": gui_stall, "gpu": gpu_status}


def run_part(name: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "part.json"
        subprocess.run([sys.executable, __file__, "--part", name, str(out)], check=True, timeout=3600)
        return json.loads(out.read_text())


def main() -> None:
    results = {"loadavg_before": load_average()}
    (HERE / "results").mkdir(exist_ok=True)
    for name in PARTS:
        results[name] = run_part(name)
    results["loadavg_after"] = load_average()
    core, dense, long, gui = results["smollm2"], results["minilm-dense"], results["minilm-long"], results["gui"]
    ratio = long["result_mib"] / dense["result_mib"]
    switch_s = max(gui["switch_head_refined_s"])
    goals = {
        "resident_gib": (core["resident_gib"], 2.5, f"{core['resident_gib']:.2f} GiB resident (peak "
                         f"{core['peak_resident_gib']:.2f}; {core['resident_after_load_gib']:.2f} with only the model "
                         f"loaded; kept attention {core['kept_mib']:.0f} MiB)"),
        "max_stall_ms": (gui["max_own_stall_ms"], 100, stall_words(gui)),
        "max_raw_stall_ms": (gui["max_stall_ms"], 100, "the same, with the machine's stops left in"),
        "switch_head_s": (switch_s, 1.0, "switching layer/head to the refined picture painted: " + ", ".join(
            f"{s['wall_s']:.2f} s (CPU {s['cpu_s']:.2f} s, first picture {s['first_picture_ms']:.0f} ms, "
            f"right head: {s['right_head']})" for s in gui["switch"])),
        "zoom_256_s": (max(gui["zoom_256_ms"]) / 1e3, 0.2, "zoom into 256 x 256 tokens, painted: " + ", ".join(
            f"{z['wall_s'] * 1e3:.0f} ms (CPU {z['cpu_s'] * 1e3:.0f})" for z in gui["zoom"])),
        "minilm_memory_ratio": (ratio, 0.25, f"MiniLM at {dense['tokens']} tokens: every weight "
                                f"{dense['result_mib']:.1f} MiB, long mode {long['result_mib']:.1f} MiB"),
    }
    print(f"SmolLM2, {core['tokens']} tokens; load average {results['loadavg_before']} before, "
          f"{results['loadavg_after']} after")
    print(f"  forward pass (engine): {core['forward']['wall_s']:.1f} s wall, {core['forward']['cpu_s']:.1f} s CPU; "
          f"in the app {gui['forward']['wall_s']:.1f} s wall, {gui['forward']['cpu_s']:.1f} s CPU")
    for name, (value, target, words) in goals.items():
        print(f"  {'MET    ' if value <= target else 'NOT MET'} {name} <= {target}: {words}")
    print("  engine only: 512 x 512 max + mean summaries of a head "
          + ", ".join(f"{s['wall_s'] * 1e3:.0f} ms (CPU {s['cpu_s'] * 1e3:.0f})" for s in core["switch_head"])
          + "; 256 x 256 region " + ", ".join(f"{z['wall_s'] * 1e3:.1f} ms" for z in core["zoom_256"]))
    print(f"  GPU: {results['gpu']['note']}")
    write("long", {**results, "goals": {name: {"value": value, "target": target, "met": value <= target,
                                               "what": words} for name, (value, target, words) in goals.items()}})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--part":
        Path(sys.argv[3]).write_text(json.dumps(PARTS[sys.argv[2]]()))
    else:
        main()
