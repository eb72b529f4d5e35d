"""The profiler panel: a sweep in a worker thread, progress, cancel, plots, export, the GUI stays live."""
from __future__ import annotations

import json
import time

import numpy as np
from PySide6.QtCore import Qt

from attnstudio.session import Session
from tests.ui.conftest import STALL_LIMIT_MS, event_loop_gaps
from tests.ui.looks import pixels


def configure(panel, lengths="64,128,256,512"):
    panel.lengths.setText(lengths)
    panel.heads.setValue(2)
    panel.d_k.setValue(16)
    panel.repeats.setValue(1)


def test_a_sweep_fills_plots_table_and_session(make_window, qtbot, tmp_path):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    configure(panel)
    with qtbot.waitSignal(panel.sweep_finished, timeout=60_000):
        assert panel.start()
    assert panel.progress.value() == panel.progress.maximum() == 12
    assert panel.table.rowCount() == 12
    names = [item.name() for item in panel.time_plot.listDataItems() if item.name()]
    assert any(name.startswith("naive/numpy (n^") for name in names) and "theory ∝ n²" in names
    assert window.session_model.session.profile["points"][0]["n"] == 64
    assert "Fitted for n ≥ 512" in panel.status.text() or "Done" in panel.status.text()
    for suffix in ("csv", "json", "png", "svg"):
        panel.export(str(tmp_path / f"p.{suffix}"))
        assert (tmp_path / f"p.{suffix}").stat().st_size > 100
    assert len(json.loads((tmp_path / "p.json").read_text())["points"]) == 12


def test_cancel_mid_sweep_keeps_partial_results(make_window, qtbot):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    configure(panel, "64,128,256,512,1024,2048,4096")
    panel.kernel_boxes["window"].setChecked(False)
    panel.start()
    qtbot.waitUntil(lambda: panel.progress.value() >= 2, timeout=30_000)
    with qtbot.waitSignal(panel.sweep_finished, timeout=60_000) as finished:
        panel.cancel_button.click()
    assert finished.args[0].cancelled
    assert 2 <= len(finished.args[0].points) < 14
    assert "partial results kept" in panel.status.text()
    assert panel.run_button.isEnabled()


def test_bad_lengths_are_reported_in_the_panel(make_window):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    panel.lengths.setText("64, lots")
    assert not panel.start()
    assert "comma-separated" in panel.status.text()


def test_the_event_loop_never_stalls_during_a_sweep(make_window, qtbot):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    configure(panel, "256,512,1024,2048")
    panel.heads.setValue(8)
    panel.d_k.setValue(64)
    started = time.perf_counter()
    with event_loop_gaps() as gaps, qtbot.waitSignal(panel.sweep_finished, timeout=120_000):
        panel.start()
    assert time.perf_counter() - started > 0.3, "the sweep did real work while we watched"
    print(f"event-loop gaps during the sweep: max {max(gaps)} ms over {len(gaps)} ticks")
    assert max(gaps) < STALL_LIMIT_MS, f"longest event-loop stall {max(gaps)} ms"


def test_closing_the_window_mid_sweep_stops_the_worker(make_window, qtbot):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    configure(panel, "64,128,256,512,1024,2048,4096")
    panel.start()
    qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=30_000)
    window.close()
    assert panel.runner.process.state() == panel.runner.process.ProcessState.NotRunning
    assert not window.controller._thread.is_alive()


def test_the_table_titles_are_whole_in_a_1024x700_window(make_window, qtbot):
    """Each column title ("median time (ms)", "peak memory (MiB)") is drawn whole: its section is wider than
    the text, and the drawn header has no glyph pixels in the gap between two sections."""
    window = make_window(Session(backend="numpy"))
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (1024, 700))
    window.session_model.update(view="profiler")
    header = window.views["profiler"].table.horizontalHeader()
    qtbot.waitUntil(header.isVisible)
    qtbot.wait(50)
    metrics = header.fontMetrics()
    for column in range(header.count()):
        title = header.model().headerData(column, Qt.Horizontal)
        assert metrics.horizontalAdvance(title) + 8 <= header.sectionSize(column), (title, header.sectionSize(column))
    image = pixels(header).astype(int)  # (h, w, 3)
    for column in range(1, header.count()):
        edge = header.sectionViewportPosition(column)
        gap = image[3:-3, edge + 2:edge + 4]  # just inside the next section: its padding, never a letter
        assert np.ptp(gap, axis=(0, 1)).max() <= 40, header.model().headerData(column, Qt.Horizontal)
