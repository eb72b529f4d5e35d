"""The real widgets, driven like a user: typing, heads, masks, views, errors, settings."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QTextCursor
from PySide6.QtWidgets import QMessageBox

from attnstudio.core.masks import MaskSpec
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.controls import UNKNOWN_WIDTH, ControlPanel
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from tests.conftest import PROJECT_ROOT
from tests.ui.conftest import open_model, wait_for_result


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format_RGB32)
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width(), :3].copy()


def test_opens_ready_with_the_default_sentence(make_window):
    window = make_window(Session())
    result = window.results.result
    assert result.query_tokens[:3] == ["[CLS]", "the", "cat"] and result.num_layers == 6 and result.heads == 12
    assert "13 tokens" in window.tokens_label.text()
    assert window.backend_label.text().startswith("backend:")
    assert window.time_label.text().endswith("ms")


def test_typing_updates_tokens_and_heatmap_pixels(make_window, qtbot):
    window = make_window()
    heatmap = window.views["heatmap"]
    before = pixels(heatmap.canvas)
    window.controls.text.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClicks(window.controls.text, " Really")
    wait_for_result(qtbot, window, lambda r: "really" in r.query_tokens)
    qtbot.wait(50)
    assert window.results.result.query_tokens[-3:] == [".", "really", "[SEP]"]
    assert "really" in window.controls.tokens.text()
    assert heatmap.plot.matrix.shape == (14, 14)
    assert (pixels(heatmap.canvas) != before).any(axis=-1).mean() > 0.05, "the heatmap was redrawn"


def test_rapid_typing_is_coalesced(make_window, qtbot):
    window = make_window()
    runs_before = window.controller.runs
    qtbot.keyClicks(window.controls.text, " and then it slept for a very long time")
    wait_for_result(qtbot, window, lambda r: "time" in r.query_tokens)
    qtbot.waitUntil(lambda: not window.controller.busy)
    assert window.controller.runs - runs_before < window.controller.requests, "stale edits were dropped, not queued"


def test_changing_heads_changes_the_grid(make_window, qtbot):
    window = make_window(Session(model="synthetic", heads=4, backend="numpy", view="heads"))
    heads_view = window.views["heads"]
    assert len(heads_view.head_plots) == 4
    choose(window.controls.heads, 6)
    wait_for_result(qtbot, window, lambda r: r.heads == 6)
    qtbot.wait(20)
    assert len(heads_view.head_plots) == 6
    assert all(plot.titleLabel.text.startswith(f"L1·H{i + 1} · H=") for i, plot in enumerate(heads_view.head_plots))


def test_clicking_a_head_focuses_it(make_window, qtbot):
    window = make_window(Session(view="heads", backend="numpy"))
    heads_view = window.views["heads"]
    qtbot.wait(50)
    plot = heads_view.head_plots[5]
    center = heads_view.grid.mapFromScene(plot.sceneBoundingRect().center())
    qtbot.mouseClick(heads_view.grid.viewport(), Qt.LeftButton, pos=center)
    qtbot.waitUntil(lambda: window.session_model.session.head == 5)
    window.session_model.update(view="heatmap")  # hidden views catch up when shown
    assert window.views["heatmap"].plot.titleLabel.text.count("head 6/12") == 1


def choose(combo, data) -> None:
    """Pick the item holding ``data`` as a user would (the combo's activated signal)."""
    combo.setCurrentIndex(combo.findData(data))
    combo.activated.emit(combo.currentIndex())


def click_cell(qtbot, view, row, col):
    """A real mouse click on the centre of a heatmap cell."""
    scene_point = view.plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    widget_point = view.canvas.mapFromScene(scene_point)
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=QPoint(widget_point.x(), widget_point.y()))


def test_mask_editor_blocks_a_clicked_cell(make_window, qtbot):
    window = make_window()
    heatmap = window.views["heatmap"]
    assert window.results.result.attentions()[0, 0, 5, 2] > 0
    heatmap.edit_mask.setChecked(True)
    click_cell(qtbot, heatmap, 5, 2)
    qtbot.waitUntil(lambda: window.session_model.session.mask.blocked_cells == ((5, 2),))
    wait_for_result(qtbot, window, lambda r: r.mask is not None)
    attentions = window.results.result.attentions()
    assert (attentions[:, :, 5, 2] == 0).all()
    np.testing.assert_allclose(attentions[:, :, 5].sum(-1), 1.0, atol=1e-5)
    heatmap.clear_cells.click()
    wait_for_result(qtbot, window, lambda r: r.mask is None)


def test_clicking_a_row_shows_its_distribution(make_window, qtbot):
    window = make_window()
    heatmap = window.views["heatmap"]
    click_cell(qtbot, heatmap, 8, 3)
    qtbot.waitUntil(lambda: heatmap.selected_row == 8)
    assert "'it' (row 8)" in heatmap.distribution.titleLabel.text


def test_masks_and_scores_from_the_controls(make_window, qtbot):
    window = make_window()
    controls = window.controls
    controls.mask_colour.mask_parts["window"].setChecked(True)
    controls.mask_colour.window.setValue(1)
    wait_for_result(qtbot, window, lambda r: r.mask is not None and r.mask[0, 2] == False)  # noqa: E712
    assert window.session_model.session.mask == MaskSpec("window", width=1)
    attentions = window.results.result.attentions()
    assert (attentions[:, :, 0, 2:] == 0).all()
    controls.score.setCurrentIndex(controls.score.findData("additive"))
    controls.score.activated.emit(controls.score.currentIndex())
    qtbot.waitUntil(lambda: window.session_model.session.score == "additive")
    controls.temperature.setValue(0.5)
    qtbot.waitUntil(lambda: window.session_model.session.temperature == 0.5)
    wait_for_result(qtbot, window, lambda r: (r.session.score, r.session.temperature) == ("additive", 0.5))
    window.session_model.update(view="pipeline")
    assert "effective scale 2, temperature 0.5" in window.views["pipeline"].formula.text()


def test_errors_show_in_the_status_bar_and_the_app_keeps_running(make_window, qtbot):
    window = make_window()
    offered = [window.controls.heads.itemData(i) for i in range(window.controls.heads.count())]
    assert offered == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]  # the divisors of 384: 5 is never offered
    assert not window.session_model.update(heads=5)  # and refused if asked for anyway
    qtbot.waitUntil(lambda: "divide" in window.statusBar().currentMessage())
    assert window.session_model.session.heads is None
    window.controls.text.setPlainText("   ")
    qtbot.waitUntil(lambda: "empty" in window.statusBar().currentMessage())
    choose(window.controls.heads, 6)
    window.controls.text.setPlainText("Still alive.")
    wait_for_result(qtbot, window, lambda r: r.heads == 6 and "alive" in r.query_tokens)


def test_a_bad_model_folder_is_refused_and_changes_nothing(make_window, qtbot, tmp_path):
    window = make_window()
    assert not open_model(qtbot, window, str(tmp_path))
    assert "no config.json" in window.statusBar().currentMessage()
    dialogs = [d for d in window.findChildren(QMessageBox) if d.isVisible()]
    assert dialogs and "no config.json" in dialogs[0].text()
    dialogs[0].accept()
    assert window.session_model.session.model == "minilm"


def test_layer_and_head_shortcuts(make_window, qtbot):
    window = make_window()
    window.tabs.setFocus()
    qtbot.keyClick(window, Qt.Key_Down, Qt.AltModifier)
    qtbot.keyClick(window, Qt.Key_Right, Qt.AltModifier)
    qtbot.keyClick(window, Qt.Key_Right, Qt.AltModifier)
    assert (window.session_model.session.layer, window.session_model.session.head) == (1, 2)
    assert window.controls.layer.value() == 2 and window.controls.head.value() == 3
    qtbot.keyClick(window, Qt.Key_3, Qt.ControlModifier)
    assert window.tabs.currentWidget() is window.views.containers["model"]  # the third tab
    qtbot.keyClick(window, Qt.Key_4, Qt.ControlModifier)
    assert window.tabs.currentWidget() is window.views.containers["pipeline"]


def test_hidden_views_wait_until_shown(make_window, qtbot):
    window = make_window()
    pipeline = window.views["pipeline"]
    window.session_model.update(view="pipeline")
    window.session_model.update(view="heatmap")
    window.controls.text.setPlainText("Only the visible view redraws.")
    wait_for_result(qtbot, window, lambda r: "redraw" in r.query_tokens or "red" in r.query_tokens)
    assert pipeline.plots["weights"].row_labels[1] == "the", "the hidden pipeline still shows the old sentence"
    window.session_model.update(view="pipeline")
    assert pipeline.plots["weights"].row_labels[1] == "only"


def test_every_view_draws(make_window, qtbot):
    window = make_window(Session(pair_text="", backend="numpy"))
    for key in ("heatmap", "heads", "pipeline", "lines", "rollout"):
        window.session_model.update(view=key)
        qtbot.wait(30)
        image = pixels(window.views[key])
        assert image.std() > 10, f"{key} shows something"
    pipeline = window.views["pipeline"]
    steps = pipeline.steps()
    np.testing.assert_allclose(steps["weights"], window.results.result.attentions()[0, 0])
    assert steps["queries"].shape == (13, 32)


def test_cross_attention_from_the_pair_field(make_window, qtbot):
    window = make_window()
    window.controls.pair.setText("A dog slept.")
    wait_for_result(qtbot, window, lambda r: r.cross_attention)
    assert window.views["heatmap"].plot.matrix.shape == (13, 6)
    assert "13 → 6 tokens" in window.tokens_label.text()
    window.session_model.update(view="rollout")
    assert "not defined for cross-attention" in window.views["rollout"].note.text()


def test_text_is_drawn_as_text(make_window, qtbot):
    window = make_window()
    qtbot.wait(50)
    axis = window.views["heatmap"].plot.getAxis("left")
    rect = window.views["heatmap"].canvas.mapFromScene(axis.sceneBoundingRect()).boundingRect()
    area = pixels(window.views["heatmap"].canvas)[rect.top():rect.bottom(), rect.left():rect.right()]
    dark = (area.mean(-1) < 128).mean()
    assert 0.01 < dark < 0.5, "token labels put glyph pixels on the axis, neither blank nor solid boxes"


def test_settings_and_layout_persist(make_window, qtbot, settings):
    window = make_window()
    window.controls.text.setPlainText("Remember me.")
    qtbot.waitUntil(lambda: window.session_model.session.text == "Remember me.")
    window.toggle_theme()
    window.close()
    again = make_window(restore=True)
    assert again.session_model.session.text == "Remember me." and again.theme == "dark"
    again.toggle_theme()


def test_selftest_writes_a_screenshot(tmp_path):
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "attnstudio", "--selftest", str(out)], capture_output=True,
                          check=False, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "first heatmap painted" in done.stdout
    assert re.search(r"few-rows kernel (avx2\+fma|baseline) on \d+ core", done.stdout), done.stdout
    image = QImage(str(out))
    assert image.width() >= 800 and image.height() >= 500
    assert Path(out).stat().st_size > 20_000


def test_pyside_does_not_leak_references_to_none(qapp):
    """PySide6 6.12.0 decrefs None in processEvents() and crashes Python 3.11; the pin keeps it out."""
    before = sys.getrefcount(None)
    for _ in range(2000):
        qapp.processEvents()
    assert sys.getrefcount(None) - before > -100


def test_the_greyed_width_boxes_show_the_pretrained_models_own_widths(make_window, qtbot):
    window = make_window(Session(backend="numpy", d_k=16, d_model=64))
    controls = window.controls
    assert not controls.d_model.isEnabled()
    assert (controls.d_k.value(), controls.d_model.value()) == (32, 384)  # MiniLM: 12 heads of 32 in 384
    window.session_model.update(model="synthetic")
    wait_for_result(qtbot, window, lambda r: r.model_name == "synthetic")
    assert controls.d_model.isEnabled() and (controls.d_k.value(), controls.d_model.value()) == (16, 64)
    assert window.session_model.session.d_model == 64, "showing the model's width never writes it into the session"


def test_before_its_first_result_a_pretrained_model_shows_no_made_up_widths(qtbot):
    """The greyed d_k and d_model boxes show a dash until the model's result gives its widths (they showed the
    synthetic model's 16 and 64 while SmolLM2 loaded); the synthetic model shows the session's widths."""
    session = Session(text="the cat sat", model=str(PROJECT_ROOT / "tests" / "data" / "tiny-llama"), backend="numpy",
                      d_k=16, d_model=64)
    session_model = SessionModel(session)
    results = ResultModel(session_model)
    controls = ControlPanel(session_model, results)
    qtbot.addWidget(controls)
    controls.show()
    qtbot.waitExposed(controls)
    blank = pixels(controls.d_k)
    assert controls.d_k.text() == UNKNOWN_WIDTH and controls.d_model.text() == UNKNOWN_WIDTH
    results.set_result(Engine().compute(session))
    assert (controls.d_k.text(), controls.d_model.text()) == ("8", "32")  # tiny-llama: 4 heads of 8 in 32
    assert not np.array_equal(pixels(controls.d_k), blank), "the box still draws the dash"
    session_model.update(model="synthetic", heads=4)
    assert (controls.d_k.text(), controls.d_model.text()) == ("16", "64")
    assert session_model.session.d_model == 64
