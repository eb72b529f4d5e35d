"""Freshness: every title, caption, hover text and status line describes the result it sits next to.

Each stale case of issue 12 is driven here: the settings change while a compute is held back in the
worker (a gate on the engine), and every label is checked against the settings of the result shown.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from attnstudio.core.masks import MaskSpec
from attnstudio.core.scores import SCORES
from attnstudio.errors import AttnStudioError
from attnstudio.session import Session
from tests.ui.conftest import wait_for_result


class Gate:
    """Holds every compute in the worker thread until released, so a test can act mid-compute."""

    def __init__(self, engine):
        self._open = threading.Event()
        self._open.set()
        self.waiting = 0
        self.fail_with: str | None = None  # set: the next compute fails with this message
        compute = engine.compute

        def gated(session, **kwargs):
            self.waiting += 1
            self._open.wait(30)
            self.waiting -= 1
            if self.fail_with:
                message, self.fail_with = self.fail_with, None
                raise AttnStudioError(message)
            return compute(session, **kwargs)

        engine.compute = gated

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()


@pytest.fixture
def gated_window(make_window):
    def make(session: Session | None = None):
        window = make_window(session)
        return window, Gate(window.controller.engine)
    return make


def assert_labels_describe_the_shown_result(window) -> None:
    """The heatmap title, the heads caption, the pipeline formula, the export caption and the status bar."""
    results = window.results
    result, shown = results.result, results.shown
    assert (shown.layer, shown.head) == (min(window.session_model.session.layer, result.num_layers - 1),
                                         min(window.session_model.session.head, result.heads - 1))
    for name in ("heatmap", "heads", "pipeline"):
        window.views[name].ensure_fresh()
        if not window.views[name].isVisible():
            window.views[name].refresh()
    title = window.views["heatmap"].plot.titleLabel.text
    assert f"layer {shown.layer + 1}/{result.num_layers}" in title
    assert f"head {shown.head + 1}/{result.heads}" in title
    assert shown.mask.describe() in title
    formula = window.views["pipeline"].formula.text()
    assert f"layer {shown.layer + 1}, head {shown.head + 1}:" in formula
    assert f"temperature {shown.temperature:g}" in formula and f"mask: {shown.mask.describe()}" in formula
    caption = window.views["heads"].caption.text()
    assert f"layer {shown.layer + 1}/{result.num_layers} · head {shown.head + 1} selected" in caption
    export_caption = window.files.caption()
    assert f"layer {shown.layer + 1}/{result.num_layers} · head {shown.head + 1}/{result.heads}" in export_caption
    assert f"mask: {shown.mask.describe()}" in export_caption
    assert f"score: {SCORES[shown.score].caption} · temperature {shown.temperature:g}" in export_caption
    assert window.tokens_label.text().startswith(f"{len(result.query_tokens)} tokens")
    # the result's settings are the ones it was computed from
    assert result.session.text == shown.text and result.session.mask == shown.mask


def hover_cell(qtbot, view, row, col) -> None:
    scene_point = view.plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    widget_point = view.canvas.mapFromScene(scene_point)
    viewport = view.canvas.viewport()
    position = QPointF(int(widget_point.x()), int(widget_point.y()))
    move = QMouseEvent(QEvent.MouseMove, position, viewport.mapToGlobal(position), Qt.NoButton, Qt.NoButton,
                       Qt.NoModifier)
    QApplication.sendEvent(viewport, move)  # a real move event (QTest's mouseMove sends none offscreen)
    qtbot.waitUntil(lambda: f"(row {row})" in view.readout.text())


def test_hover_value_follows_an_alt_arrow_head_switch(make_window, qtbot):
    window = make_window()
    heatmap = window.views["heatmap"]
    hover_cell(qtbot, heatmap, 5, 2)
    weights = window.results.result.attentions()
    assert "layer 1, head 1 · " in heatmap.readout.text()
    assert heatmap.readout.text().endswith(f"{weights[0, 0, 5, 2]:.4g}")
    window.tabs.setFocus()
    qtbot.keyClick(window, Qt.Key_Right, Qt.AltModifier)
    assert window.results.head == 1
    assert "layer 1, head 2 · " in heatmap.readout.text()
    assert heatmap.readout.text().endswith(f"{weights[0, 1, 5, 2]:.4g}")
    assert weights[0, 0, 5, 2] != weights[0, 1, 5, 2]
    qtbot.keyClick(window, Qt.Key_Down, Qt.AltModifier)
    assert heatmap.readout.text().startswith("layer 2, head 2 · ")
    assert heatmap.readout.text().endswith(f"{weights[1, 1, 5, 2]:.4g}")
    assert_labels_describe_the_shown_result(window)


def test_status_line_never_keeps_the_previous_sentences_notice(gated_window, qtbot):
    window, gate = gated_window()
    window.controls.text.setPlainText("word " * 600)  # truncated to 512 tokens: a notice
    wait_for_result(qtbot, window, lambda r: len(r.query_tokens) == 512)
    assert "truncated" in window.statusBar().currentMessage()
    gate.hold()
    window.controls.text.setPlainText("A short one.")
    qtbot.waitUntil(lambda: gate.waiting == 1)
    # mid-compute the long text is still on screen, and so is its notice and token count
    assert "truncated" in window.statusBar().currentMessage() and window.tokens_label.text() == "512 tokens"
    assert_labels_describe_the_shown_result(window)
    gate.release()
    wait_for_result(qtbot, window, lambda r: len(r.query_tokens) < 10)
    assert window.statusBar().currentMessage() == ""
    assert window.tokens_label.text() == f"{len(window.results.result.query_tokens)} tokens"
    assert_labels_describe_the_shown_result(window)


def grid_border_pixels(window, heads_view) -> list[int]:
    """How many orange highlight pixels each head thumbnail's frame has on screen.

    Read from the window's backing store (what the screen shows after partial repaints), not from
    ``grab()``, which repaints everything afresh and so never shows a highlight left behind.
    """
    image = window.screen().grabWindow(window.winId()).toImage().convertToFormat(QImage.Format_RGB32)
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    rgb = array[:, : image.width(), 2::-1].astype(int)  # BGRA -> RGB
    orange = (np.abs(rgb - np.array([255, 140, 0])).sum(-1) < 60)
    counts = []
    for plot in heads_view.head_plots:
        rect = heads_view.grid.mapFromScene(plot.getViewBox().sceneBoundingRect()).boundingRect()
        corner = heads_view.grid.viewport().mapTo(window, rect.topLeft())
        x0, y0 = corner.x() - 4, corner.y() - 4
        counts.append(int(orange[max(y0, 0):y0 + rect.height() + 9, max(x0, 0):x0 + rect.width() + 9].sum()))
    return counts


def click_head(qtbot, heads_view, head: int) -> None:
    center = heads_view.grid.mapFromScene(heads_view.head_plots[head].sceneBoundingRect().center())
    qtbot.mouseClick(heads_view.grid.viewport(), Qt.LeftButton, pos=center)


def test_only_the_clicked_head_thumbnail_is_highlighted(make_window, qtbot):
    window = make_window(Session(view="heads", backend="numpy"))
    heads_view = window.views["heads"]
    qtbot.wait(50)
    for head in (5, 2, 9):
        click_head(qtbot, heads_view, head)
        qtbot.waitUntil(lambda h=head: window.results.head == h)
        qtbot.wait(50)
        counts = grid_border_pixels(window, heads_view)
        highlighted = [i for i, count in enumerate(counts) if count > 20]
        assert highlighted == [head], counts
    assert_labels_describe_the_shown_result(window)


def test_profiler_table_describes_the_running_sweep_not_the_last_one(make_window, qtbot):
    window = make_window(Session(view="profiler", backend="numpy"))
    panel = window.views["profiler"]
    panel.lengths.setText("64,128")
    panel.heads.setValue(2)
    panel.d_k.setValue(16)
    panel.repeats.setValue(1)
    with qtbot.waitSignal(panel.sweep_finished, timeout=60_000):
        panel.start()
    assert panel.table.rowCount() == 6
    panel.lengths.setText("96,160,224")
    assert panel.start()
    assert panel.table.rowCount() == 0, "the previous sweep's rows are gone once a new sweep starts"
    assert not [item for item in panel.time_plot.listDataItems() if item.name() and "/" in item.name()
                and len(item.xData if item.xData is not None else []) > 0]
    qtbot.waitUntil(lambda: panel.table.rowCount() > 0, timeout=60_000)
    shown = {panel.table.item(row, 0).text() for row in range(panel.table.rowCount())}
    assert shown <= {"96", "160", "224"}
    panel.cancel()
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=20_000)


def test_exporting_mid_compute_captions_the_picture_on_screen(gated_window, qtbot, tmp_path):
    window, gate = gated_window()
    gate.hold()
    window.session_model.update(temperature=0.5, mask=MaskSpec(("causal", "window"), width=1), layer=3, head=4)
    qtbot.waitUntil(lambda: gate.waiting == 1)
    assert window.results.result.session.temperature == 1.0  # the old picture is still shown
    assert_labels_describe_the_shown_result(window)
    assert window.files.export_image_to(tmp_path / "mid.svg")
    svg = (tmp_path / "mid.svg").read_text(encoding="utf-8")
    assert "temperature 1 · " in svg and "mask: no mask" in svg and "layer 4/6 · head 5/12" in svg
    assert "temperature 0.5" not in svg and "causal" not in svg
    gate.release()
    wait_for_result(qtbot, window, lambda r: r.session.temperature == 0.5)
    assert window.files.export_image_to(tmp_path / "after.svg")
    svg = (tmp_path / "after.svg").read_text(encoding="utf-8")
    assert "temperature 0.5" in svg and "mask: causal + sliding window ±1" in svg
    assert_labels_describe_the_shown_result(window)


def test_a_refused_or_failed_setting_says_the_picture_is_stale_until_fixed(gated_window, qtbot):
    window, gate = gated_window()
    assert not window.session_model.update(heads=5)  # does not divide MiniLM's 384: never enters the session
    assert window.session_model.session.heads is None and window.results.result.heads == 12
    assert window.stale_label.isVisible() and "divide" in window.stale_label.toolTip()
    assert window.stale_label.text().startswith("⚠ views show the last valid settings")
    window.statusBar().clearMessage()  # the transient message times out ...
    assert window.stale_label.isVisible()  # ... the stale note stays
    assert_labels_describe_the_shown_result(window)
    window.controls.text.setPlainText("   ")  # refused: empty
    assert "empty" in window.stale_label.toolTip()
    gate.fail_with = "simulated failure"
    window.controls.text.setPlainText("This compute fails.")
    qtbot.waitUntil(lambda: "simulated failure" in window.stale_label.toolTip())
    assert window.stale_label.isVisible() and "fails" not in window.results.result.query_tokens
    assert_labels_describe_the_shown_result(window)
    window.controls.text.setPlainText("Fixed now.")
    wait_for_result(qtbot, window, lambda r: "fixed" in r.query_tokens)
    assert not window.stale_label.isVisible()
    assert_labels_describe_the_shown_result(window)


def test_a_stale_result_never_clamps_the_users_head(gated_window, qtbot):
    window, gate = gated_window()
    window.session_model.update(head=9)  # the user's head 10
    assert window.controls.head.value() == 10
    gate.hold()
    window.session_model.update(heads=4)
    qtbot.waitUntil(lambda: gate.waiting == 1)
    window.session_model.update(heads=12)  # quickly back, while the 4-head compute runs
    gate.release()
    wait_for_result(qtbot, window, lambda r: r.heads == 4)
    assert window.session_model.session.head == 9, "the 4-head result must not write its clamp into the session"
    assert window.results.head == 3  # shown clamped, and labelled as such
    assert_labels_describe_the_shown_result(window)
    wait_for_result(qtbot, window, lambda r: r.heads == 12)
    assert window.session_model.session.head == 9 and window.results.head == 9
    assert window.controls.head.value() == 10
    assert_labels_describe_the_shown_result(window)


def test_a_session_file_with_a_head_count_its_model_cannot_take_is_refused(make_window, tmp_path):
    window = make_window()
    path = tmp_path / "five.attnsession"
    path.write_text(json.dumps({"format": "attnstudio-session", "version": 2,
                                "session": {"model": "minilm", "heads": 5}}))
    assert not window.files.open_path(path)
    assert "divide" in window.statusBar().currentMessage()
    # nothing was applied, so the views do show the current settings: no "views show the last valid settings"
    assert not window.stale_label.isVisible()
    assert window.session_model.session.heads is None
    for box in window.findChildren(QMessageBox):
        box.accept()
