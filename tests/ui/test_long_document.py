"""Long documents in the app, tested by what is drawn: block summaries, full resolution when zoomed in, the
exact weight on hover, thumbnails and entropy in the heads grid, opening and dropping a text, progress with
Stop. MiniLM with the long threshold lowered stands in for an 8,192-token SmolLM2 text (same code path)."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from attnstudio.core.display import MASKED_RGBA
from attnstudio.core.long_attention import Cancelled
from attnstudio.core.masks import MaskSpec
from attnstudio.engine import Engine
from attnstudio.limits import LIMITS, Limit
from attnstudio.session import Session
from attnstudio.ui.compute_worker import ComputeController
from attnstudio.ui.views import long_heatmap
from attnstudio.ui.views.heads import HeadsView
from attnstudio.ui.views.heatmap import HeatmapView
from attnstudio.ui.views.lines import LinesView
from tests.ui.conftest import build_view, wait_for_result
from tests.ui.looks import pixels

TEXT = ("Attention lets every token look at every other token, and a long document has many of them. " * 4).strip()
VIRIDIS = pg.colormap.get("viridis")


@pytest.fixture
def long_threshold(monkeypatch):
    """Texts over 24 tokens go the long way (the app's threshold is 1,024)."""
    monkeypatch.setitem(LIMITS, "dense_tokens", Limit(1, 24, "tokens whose weights are all kept"))


def colour_of(value: float, levels: tuple[float, float]) -> np.ndarray:
    return np.asarray(VIRIDIS.map((value - levels[0]) / (levels[1] - levels[0]), mode="byte"))[:3].astype(int)


def pixel_at(panel, image: np.ndarray, x: float, y: float) -> np.ndarray:
    """The pixel drawn at view coordinates (x = key position, y = query position) of the long panel."""
    scene = panel.plot.getViewBox().mapViewToScene(QPointF(x, y))
    point = panel.canvas.mapFromScene(scene)
    return image[point.y(), point.x()].astype(int)


CAUSAL = MaskSpec(("causal",))


def long_heatmap_view(qtbot, monkeypatch, *, span: int, mask=CAUSAL):
    monkeypatch.setattr(long_heatmap, "FULL_RESOLUTION_SPAN", span)
    view, model, results, result = build_view(qtbot, HeatmapView,
                                              Session(text=TEXT, backend="numpy", mask=mask, layer=2, head=5))
    panel = view.long_panel
    qtbot.waitUntil(lambda: panel.summary_final and panel.result is result, timeout=10_000)
    return view, model, results, result, panel


def test_a_long_head_is_drawn_as_block_summaries_max_or_mean(qtbot, monkeypatch, long_threshold):
    view, _, _, result, panel = long_heatmap_view(qtbot, monkeypatch, span=8)  # whole view: summaries
    assert result.long is not None and view.pages.currentWidget() is panel
    n = len(result.query_tokens)
    long = result.long
    tile_max, tile = long.summary(2, 5, "max", long_heatmap.SUMMARY_CELLS)
    assert tile == 1 and panel.detail is None and "max over 1×1-token blocks" in panel.title.text()
    assert f"{n} tokens" in panel.title.text() and "layer 3/6 · head 6/12" in panel.title.text()
    image = pixels(panel.canvas)
    levels = panel.summary_levels
    row, col = np.unravel_index(np.argmax(tile_max), tile_max.shape)
    assert np.abs(pixel_at(panel, image, col + 0.5, row + 0.5) - colour_of(tile_max[row, col], levels)).max() <= 12
    # Above the diagonal the causal mask forbids every cell: the mask grey, not the colour map's dark end.
    assert np.abs(pixel_at(panel, image, n - 0.5, 0.5) - np.array(MASKED_RGBA[:3])).max() <= 12
    panel.kind.setCurrentIndex(1)
    panel.kind.activated.emit(1)
    qtbot.waitUntil(lambda: "mean over" in panel.title.text() and panel.summary_final, timeout=10_000)
    tile_mean, _ = long.summary(2, 5, "mean", long_heatmap.SUMMARY_CELLS)
    np.testing.assert_allclose(panel.summary, tile_mean)
    image = pixels(panel.canvas)
    assert np.abs(pixel_at(panel, image, 0.5, n - 0.5) - colour_of(tile_mean[-1, 0], panel.summary_levels)).max() <= 12
    assert panel.colorbar.getAxis("left").labelText == "weight (block mean)"


@pytest.mark.parametrize("inline", [True, False], ids=["on the GUI thread", "in the worker"])
def test_zooming_in_draws_every_weight_of_the_visible_region_and_hover_reads_it(qtbot, monkeypatch, long_threshold,
                                                                               inline):
    monkeypatch.setattr(long_heatmap, "INLINE_REGION_CELLS", 10**9 if inline else 0)  # small regions, or none
    _, _, _, result, panel = long_heatmap_view(qtbot, monkeypatch, span=16)
    panel.plot.getViewBox().setRange(xRange=(20, 32), yRange=(40, 52), padding=0)
    qtbot.waitUntil(lambda: panel.detail is not None, timeout=5_000)
    row0, row1, col0, col1 = panel.detail_region
    assert row1 - row0 <= 16 and col1 - col0 <= 16 and row0 <= 40 and col0 <= 20
    exact = result.long.weights(2, 5, (row0, row1), (col0, col1))
    np.testing.assert_array_equal(panel.detail, exact)
    assert "every weight in view" in panel.title.text()
    assert panel.colorbar.getAxis("left").labelText == "weight (exact)"
    image = pixels(panel.canvas)
    row, col = np.unravel_index(np.argmax(exact), exact.shape)
    drawn = pixel_at(panel, image, col0 + col + 0.5, row0 + row + 0.5)
    assert np.abs(drawn - colour_of(exact[row, col], panel.detail_levels)).max() <= 12
    # Hover: the readout says the exact weight of the cell under the mouse.
    scene = panel.plot.getViewBox().mapViewToScene(QPointF(col0 + col + 0.5, row0 + row + 0.5))
    panel._on_mouse_moved(scene)
    weight = result.long.weight(2, 5, row0 + row, col0 + col)
    assert f"(row {row0 + row})" in panel.readout.text() and f"{weight:.4g}" in panel.readout.text()
    panel.show_all()  # back out: the summaries again
    qtbot.waitUntil(lambda: panel.detail is None, timeout=5_000)
    assert "over 1×1-token blocks" in panel.title.text()


def test_switching_head_redraws_the_long_heatmap(qtbot, monkeypatch, long_threshold):
    _, model, _, result, panel = long_heatmap_view(qtbot, monkeypatch, span=8)
    before = panel.summary.copy()
    model.update(head=0, layer=0)
    qtbot.waitUntil(lambda: "layer 1/6 · head 1/12" in panel.title.text() and panel.summary_final, timeout=10_000)
    np.testing.assert_allclose(panel.summary, result.long.summary(0, 0, "max")[0])
    assert not np.array_equal(before, panel.summary)


def test_a_switch_paints_the_new_heads_refined_summary(qtbot, monkeypatch, long_threshold):
    """The first picture of a head is the forward pass's coarse tiles; the refined one (computed in the worker)
    then replaces it: both are the new head's, and the refined tiles are max/mean of its full matrix."""
    monkeypatch.setattr(long_heatmap, "SUMMARY_CELLS", 40)  # 2 x 2-token tiles: finer than the forward's 8 x 8
    _, model, _, result, panel = long_heatmap_view(qtbot, monkeypatch, span=8)
    long = result.long
    n = len(result.query_tokens)
    shown = []  # (tile, values, layer, head) of every picture the panel draws
    draw = panel._show_summary

    def record(values, tile, masked):
        shown.append((tile, values.copy(), panel.results.shown.layer, panel.results.shown.head))
        draw(values, tile, masked)
    monkeypatch.setattr(panel, "_show_summary", record)
    for layer, head in [(4, 9), (0, 3)]:
        shown.clear()
        model.update(layer=layer, head=head)
        title = f"layer {layer + 1}/6 · head {head + 1}/12"
        qtbot.waitUntil(lambda title=title: panel.summary_final and title in panel.title.text(), timeout=10_000)
        assert [(drawn[2], drawn[3]) for drawn in shown] == [(layer, head)] * 2  # drawn twice, both the new head's
        coarse_tile, coarse, *_ = shown[0]  # first, at once: the forward pass's tiles
        assert coarse_tile == long.thumbnail_tile == 8
        np.testing.assert_array_equal(coarse, long.summary(layer, head, "max", long.forward_cells)[0])
        tile, refined, *_ = shown[-1]  # then the refined one
        assert tile == panel.tile == 2
        np.testing.assert_array_equal(refined, panel.summary)
        full = long.weights(layer, head, (0, n), (0, n))  # (n, n) exact, for the check only
        side = -(-n // 2)
        padded = np.full((2 * side, 2 * side), np.nan)
        padded[:n, :n] = full
        expected = np.nanmax(padded.reshape(side, 2, side, 2), axis=(1, 3))
        np.testing.assert_allclose(panel.summary, expected, rtol=0, atol=1e-6)
        image = pixels(panel.canvas)  # the brightest tile is drawn in the colour map's top colour
        row, col = np.unravel_index(np.argmax(expected), expected.shape)
        drawn = pixel_at(panel, image, 2 * col + 1, 2 * row + 1)
        assert np.abs(drawn - colour_of(expected[row, col], panel.summary_levels)).max() <= 12


def test_the_heads_grid_shows_thumbnails_and_entropy_of_a_long_result(qtbot, long_threshold):
    view, _, _, result = build_view(qtbot, HeadsView, Session(text=TEXT, backend="numpy", layer=1))
    assert result.long is not None
    entropy = result.long.head_entropy()
    titles = [plot.titleLabel.text for plot in view.head_plots]
    assert len(titles) == 12 and f"H={entropy[1, 4]:.2f}" in titles[4]
    expected, levels, _ = long_heatmap.long_thumbnail(result, 1, 4)
    np.testing.assert_allclose(view.head_images[4].image, expected)
    # the thumbnail's brightest tile is drawn in the colour map's top colour
    image = pixels(view.grid)
    row, col = np.unravel_index(np.nanargmax(expected), expected.shape)
    scene = view.head_plots[4].getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    point = view.grid.mapFromScene(scene)
    assert np.abs(image[point.y(), point.x()].astype(int) - colour_of(levels[1], levels)).max() <= 12
    assert "largest weight in each" in view.caption.text()


def test_views_that_need_every_weight_say_so_for_a_long_result(qtbot, long_threshold):
    view, _, _, result = build_view(qtbot, LinesView, Session(text=TEXT, backend="numpy"))
    assert result.long is not None
    assert view.waiting.isVisible() and "long document" in view.waiting.text()
    assert f"{len(result.query_tokens)} tokens" in view.waiting.text()


def test_open_text_and_drop_a_file_and_bad_files_say_why(make_window, qtbot, tmp_path):
    window = make_window()
    feeder = window.documents
    good = tmp_path / "essay.md"
    good.write_text("# A title\n\nA document opened from a file.\n", encoding="utf-8")
    assert feeder.load_text(good)
    assert window.session_model.session.text.startswith("# A title")
    assert window.controls.text.toPlainText().startswith("# A title")
    wait_for_result(qtbot, window, lambda r: "opened" in r.query_tokens)
    for name, payload, reason in [("latin.txt", "café".encode("latin-1"), "not UTF-8"),
                                  ("nul.txt", b"a\x00b", "NUL bytes"), ("slides.pdf", b"%PDF-1.4", "plain text files"),
                                  ("empty.txt", b"  \n", "no text")]:
        (tmp_path / name).write_bytes(payload)
        assert not feeder.load_text(tmp_path / name)
        assert reason in window.statusBar().currentMessage() and name in window.statusBar().currentMessage()
        assert window.session_model.session.text.startswith("# A title")  # nothing lost
    dropped = tmp_path / "dropped.txt"
    dropped.write_text("Dropped onto the window.", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    entering = QDragEnterEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, entering)  # what the window system delivers: the window's own handlers
    assert entering.isAccepted()
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, event)
    assert event.isAccepted()
    assert window.session_model.session.text == "Dropped onto the window."
    dropped.write_text("Dropped onto the text box.", encoding="utf-8")
    viewport = window.controls.text.viewport()  # Qt delivers a drop to the widget that accepted the drag's entry
    entering = QDragEnterEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, entering)
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, event)
    assert entering.isAccepted() and event.isAccepted()
    assert window.session_model.session.text == "Dropped onto the text box."
    assert window.controls.text.toPlainText() == "Dropped onto the text box.", "the file's text, not its URL"
    menu_texts = [action.text() for action in window.menuBar().actions()[0].menu().actions()]
    assert "Open text…" in menu_texts


def test_a_long_text_truncated_to_the_context_says_so(make_window, qtbot, long_threshold):
    window = make_window(Session(text="word " * 700, backend="numpy"))  # MiniLM takes 512 tokens
    wait_for_result(qtbot, window, lambda r: r.long is not None)
    message = window.statusBar().currentMessage()
    assert "truncated" in message and "Long document (512 tokens)" in message


class _GatedEngine:
    """Holds the forward pass after its first layer until the test lets it go on."""

    def __init__(self, real):
        self.real, self.gate = real, threading.Event()

    def model(self, session):
        return self.real.model(session)

    def compute(self, session, *, progress=None, cancelled=None, **options):
        def report(done, total):
            progress(done, total)
            if done == 1:
                self.gate.wait(10)
        return self.real.compute(session, progress=report, cancelled=cancelled, **options)


def test_progress_bar_counts_layers_and_stop_cancels_the_pass(make_window, qtbot, long_threshold):
    window = make_window()
    engine = _GatedEngine(window.controller.engine)
    window.controller.engine = engine
    window.controller._thread = window.controller._start_thread()  # the worker now serves the gated engine
    before = window.results.result
    window.session_model.update(text=TEXT)
    qtbot.waitUntil(window.documents.stop_button.isVisible, timeout=10_000)
    bar = window.busy
    assert (bar.value(), bar.maximum()) == (1, 6) and bar.text() == "layer 1/6"
    assert bar.toolTip().endswith("the layers of the forward pass computed so far, out of 6")
    assert "the views keep the last result until this pass is done" in window.statusBar().currentMessage()
    window.documents.stop_button.click()
    engine.gate.set()
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=10_000)
    assert "Stopped" in window.statusBar().currentMessage()
    assert window.results.result is before and not window.documents.stop_button.isVisible()
    window.session_model.update(text=TEXT + " Again.")  # the next compute runs to the end
    wait_for_result(qtbot, window, lambda r: r.long is not None and "again" in r.query_tokens)



class _SlowLongEngine:
    """A pass that polls ``cancelled()`` for 3 s, as a long pass does between row blocks, then answers."""

    def __init__(self, real):
        self.real = real

    def model(self, session):
        return self.real.model(session)

    def compute(self, session, *, progress=None, cancelled=None, **options):
        for _ in range(30):
            time.sleep(0.1)
            cancelled()
        return self.real.compute(session, **options)


def test_a_long_pass_that_outlives_the_watchdog_is_kept_alive_by_its_heartbeat(qtbot):
    engine = Engine()
    engine.compute(Session(text="load the model first", backend="numpy"))  # the answer itself is quick
    controller = ComputeController(_SlowLongEngine(engine), timeout_ms=2000)
    results, failures = [], []
    controller.result_ready.connect(results.append)
    controller.failed.connect(failures.append)
    try:
        controller.request(Session(text="a slow pass", backend="numpy"))
        qtbot.waitUntil(lambda: bool(results or failures), timeout=20_000)
        assert results and not failures and controller.abandoned == 0, (failures, controller.abandoned, controller.busy)
    finally:
        controller.shutdown()


def test_a_summary_stopped_for_a_newer_head_is_not_reported_as_a_failure(qtbot):
    """Switching on while a head's summaries are computed stops them (Cancelled): the newer head answers, and
    the readout shows no "failed" line for the one left behind."""
    started, release = threading.Event(), threading.Event()

    def work(value, *, stale):
        if value == "old":
            started.set()
            release.wait(5)
            if stale():
                raise Cancelled("stopped")
        return value
    worker = long_heatmap.LatestWorker(work, "attnstudio-test-summaries")
    ready, failed = [], []
    worker.ready.connect(lambda _key, payload: ready.append(payload))
    worker.failed.connect(lambda _key, message: failed.append(message))
    worker.request("first", "old")
    assert started.wait(5)
    worker.request("second", "new")
    release.set()
    qtbot.waitUntil(lambda: ready == ["new"], timeout=5_000)
    qtbot.wait(50)
    assert failed == []


def test_the_gui_takes_the_gil_back_within_a_millisecond_while_a_compute_runs(qtbot):
    """A compute worker (and a long pass's attention threads) hold the GIL for the interpreter's switch interval
    when the GUI thread asks for it; the controller shortens it to 1 ms (5 ms made 8k-token passes stall the event
    loop past 100 ms), and a busy Python thread no longer keeps the GUI thread waiting longer than a few ms."""
    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        controller = ComputeController()
        assert sys.getswitchinterval() <= 0.001 + 1e-9
        stop = threading.Event()

        def spin():  # pure Python: holds the GIL until asked to drop it
            while not stop.is_set():
                sum(range(1000))
        busy = threading.Thread(target=spin)
        busy.start()
        waits = []
        for _ in range(200):
            started = time.perf_counter()
            time.sleep(0.0005)
            waits.append(time.perf_counter() - started)
        stop.set()
        busy.join()
        controller.shutdown()
        assert sorted(waits)[int(0.9 * len(waits))] < 0.004, "a 5 ms switch interval makes most waits ~5 ms"
    finally:
        sys.setswitchinterval(saved)
