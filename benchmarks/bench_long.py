"""Long documents: SmolLM2 on an 8,192-token text in bounded memory (goal: resident <= 2.5 GiB with the
weights), the forward pass, switching layer/head (goal <= 1 s), zooming into a 256 x 256 region (goal <= 200 ms);
MiniLM at 512 tokens, every weight kept against the long mode (goal: <= 1/4 of the memory); and in the app,
the longest event-loop stall while the long forward pass runs with its progress bar (goal < 100 ms).

Each measurement runs in a fresh interpreter, so resident memory is that of one model and one text.
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

from common import write
from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
from PySide6.QtWidgets import QApplication

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


def smollm2_core() -> dict:
    """The engine alone: forward, then a head's 512 x 512 summary (what switching draws), then a 256 x 256 zoom."""
    engine = Engine()
    model = load_model_cached("smollm2")
    text = long_text(model.tokenizer, TOKENS)
    loaded = resident_gib()
    progress = []
    started = time.perf_counter()
    result = engine.compute(Session(text=text, model="smollm2"), progress=lambda done, total: progress.append(
        time.perf_counter() - started))
    forward_s = time.perf_counter() - started
    long = result.long
    n = len(result.query_tokens)
    switches = []
    for layer, head in [(0, 0), (14, 4), (29, 8), (7, 2), (22, 6)]:
        started = time.perf_counter()
        long.summary(layer, head, "max", 512)
        long.summary(layer, head, "mean", 512)
        switches.append(time.perf_counter() - started)
    zooms = []
    for row, col in [(n - 256, n - 512), (n // 2, n // 4), (4000 % n, 0)]:
        started = time.perf_counter()
        long.weights(29, 8, (row, row + 256), (col, col + 256))
        zooms.append(time.perf_counter() - started)
    return {"tokens": n, "forward_s": forward_s, "layer_progress_s": progress, "switch_head_s": switches,
            "zoom_256_s": zooms, "kept_mib": long.nbytes() / 2**20, "resident_after_load_gib": loaded,
            "resident_gib": resident_gib(), "peak_resident_gib": peak_gib(), "notices": result.notices}


def minilm(mode: str) -> dict:
    """MiniLM on a 512-token text: every weight kept (today's path, with the app's host copy) or the long mode."""
    engine = Engine()
    model = load_model_cached("minilm")
    text = long_text(model.tokenizer, 510)
    before = resident_gib()
    started = time.perf_counter()
    result = engine.compute(Session(text=text, model="minilm"), long=mode == "long")
    result.precompute_views()  # what the compute worker does before the app draws
    seconds = time.perf_counter() - started
    if result.long is not None:
        held = result.long.nbytes()
    else:
        held = sum(array.nbytes for trace in result.forward.traces for array in vars(trace).values())
        held += result.attentions().nbytes
    return {"mode": mode, "tokens": len(result.query_tokens), "seconds": seconds, "result_mib": held / 2**20,
            "resident_added_mib": (resident_gib() - before) * 1024, "resident_gib": resident_gib(),
            "peak_resident_gib": peak_gib()}


def gui_stall() -> dict:
    """The app on the long text: the longest gap between ticks of a 10 ms timer while the forward pass runs
    (progress bar counting layers), then switching head and zooming into 256 x 256 tokens as a user does."""
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
        gaps, progress, clock = [], [], QElapsedTimer()
        window.controller.progress.connect(lambda done, total: progress.append((done, clock.elapsed())))
        clock.start()
        last = [clock.elapsed()]

        def tick():
            gaps.append((clock.elapsed() - last[0], clock.elapsed()))
            last[0] = clock.elapsed()
        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        timer.start()
        started = time.perf_counter()
        window.session_model.update(text=text)
        while window.results.result is None or window.results.result.long is None:
            app.processEvents()
            time.sleep(0.002)
        forward_s = time.perf_counter() - started
        panel = window.views["heatmap"].long_panel
        for _ in range(50):
            app.processEvents()
            time.sleep(0.01)
        timer.stop()
        result_ms = clock.elapsed() - 500  # about when the result arrived (the loop above waited 0.5 s after)
        switches, refined = [], []
        for layer, head in [(14, 4), (29, 8), (7, 2)]:
            started = time.perf_counter()
            window.session_model.update(layer=layer, head=head)
            app.processEvents()
            assert f"head {head + 1}/" in panel.title.text()
            switches.append(time.perf_counter() - started)  # drawn from the forward pass's summaries
            while not panel.summary_final:
                app.processEvents()
                time.sleep(0.005)
            refined.append(time.perf_counter() - started)  # the 512 x 512 summary drawn
        n = panel.n
        zooms = []
        for row, col in [(n - 256, n - 512), (n // 2, n // 4)]:
            started = time.perf_counter()
            panel.plot.getViewBox().setRange(xRange=(col, col + 256), yRange=(row, row + 256), padding=0)
            panel._draw_detail()  # what the settle timer does once the wheel stops
            while panel.detail is None or panel.detail_region != panel.visible_region():
                app.processEvents()
                time.sleep(0.001)
            zooms.append(time.perf_counter() - started)  # the exact weights of the region drawn
        screenshots = save_screenshots(app, window, panel)
        window.controller.shutdown()
    stalls = sorted(gap for gap, _ in gaps[1:])
    worst = max(gaps[1:])
    return {"tokens": n, "forward_s": forward_s, "progress_updates": len(progress), "max_stall_ms": stalls[-1],
            "p99_stall_ms": stalls[int(0.99 * (len(stalls) - 1))], "ticks": len(stalls),
            "worst_stall_at_ms": worst[1], "progress_at_ms": [at for _, at in progress], "result_at_ms": result_ms,
            "stalls_over_100_ms": [(gap, at) for gap, at in gaps[1:] if gap > 100],
            "switch_head_ms": 1e3 * max(switches), "switch_head_refined_s": refined,
            "zoom_256_ms": [1e3 * z for z in zooms], "screenshots": screenshots}


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
         "gui": gui_stall}


def run_part(name: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "part.json"
        subprocess.run([sys.executable, __file__, "--part", name, str(out)], check=True, timeout=3600)
        return json.loads(out.read_text())


def main() -> None:
    results = {}
    (HERE / "results").mkdir(exist_ok=True)
    for name in PARTS:
        results[name] = run_part(name)
    core, dense, long = results["smollm2"], results["minilm-dense"], results["minilm-long"]
    print(f"SmolLM2, {core['tokens']} tokens: forward {core['forward_s']:.1f} s; "
          f"resident {core['resident_gib']:.2f} GiB "
          f"(peak {core['peak_resident_gib']:.2f}, {core['resident_after_load_gib']:.2f} with only the model loaded; "
          f"kept attention {core['kept_mib']:.0f} MiB)")
    print("  switching layer/head (512 x 512 max + mean summaries): "
          + ", ".join(f"{s * 1e3:.0f}" for s in core["switch_head_s"]) + " ms")
    print("  zoom into a 256 x 256 region: " + ", ".join(f"{s * 1e3:.1f}" for s in core["zoom_256_s"]) + " ms")
    print(f"MiniLM, {dense['tokens']} tokens: every weight {dense['result_mib']:.1f} MiB held "
          f"(+{dense['resident_added_mib']:.0f} MiB resident, peak {dense['peak_resident_gib']:.2f} GiB); long mode "
          f"{long['result_mib']:.1f} MiB (+{long['resident_added_mib']:.0f} MiB, "
          f"peak {long['peak_resident_gib']:.2f} GiB)"
          f": {long['result_mib'] / dense['result_mib']:.3f} of the memory")
    gui = results["gui"]
    print(f"app, {gui['tokens']} tokens: forward pass {gui['forward_s']:.0f} s with {gui['progress_updates']} "
          f"progress updates; event loop: longest stall {gui['max_stall_ms']:.0f} ms, 99th percentile "
          f"{gui['p99_stall_ms']:.0f} ms over {gui['ticks']} ticks; switching head {gui['switch_head_ms']:.0f} ms "
          f"(refined to 512 x 512 tiles in "
          + ", ".join(f"{s:.1f}" for s in gui["switch_head_refined_s"]) + " s); zoom to 256 x 256 "
          + ", ".join(f"{z:.0f}" for z in gui["zoom_256_ms"]) + " ms")
    write("long", {**results, "targets": {"resident_gib": 2.5, "switch_head_s": 1.0, "zoom_256_s": 0.2,
                                          "minilm_memory_ratio": 0.25, "max_stall_ms": 100}})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--part":
        Path(sys.argv[3]).write_text(json.dumps(PARTS[sys.argv[2]]()))
    else:
        main()
