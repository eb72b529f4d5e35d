"""The flow view: what it draws (pixels of the rendered canvas) on the hand-built 2-layer example, the rollout
standing in until the flow is ready, cancel and restart, the toggle, causal models and cross-attention."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication

import attnstudio.engine as engine_module
from attnstudio.core.display import MASKED_RGBA
from attnstudio.core.flow import FlowCancelled
from attnstudio.core.transformer import AttentionTrace, ForwardResult
from attnstudio.engine import Engine
from attnstudio.export.images import settle
from attnstudio.session import Session
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.flow import FlowView
from attnstudio.ui.views.matrix import WEIGHTS_COLORMAP
from tests.conftest import PROJECT_ROOT
from tests.core.test_flow import HAND_ATTENTIONS, HAND_FLOW, HAND_ROLLOUT, HAND_SHARES

# Output 0 reaches input 2 by no path (mixed2[0] = [.5, .5, 0], mixed1[:2, 2] = 0): drawn grey, "no path".
HAND_NO_PATH = {(0, 2)}
COLOUR_TOLERANCE = 6  # per channel: the image's 256-entry lookup table against the colour map itself


def hand_result():
    """A MiniLM result for a 3-token text whose attention is replaced by the hand-built 2-layer example."""
    result = Engine().compute(Session(text="cat", backend="numpy"))  # [CLS] cat [SEP]
    assert len(result.query_tokens) == 3
    traces = [AttentionTrace(None, None, None, None, HAND_ATTENTIONS[layer], None) for layer in range(2)]
    return dataclasses.replace(result, forward=ForwardResult(traces), heads=1, _host_attentions=None)


@pytest.fixture
def gate(monkeypatch):
    """Holds every flow computation until set; a cancel while held ends it as a real one would."""
    opened = threading.Event()
    real = engine_module.attention_flow

    def held(attentions, progress=None, cancelled=None):
        while not opened.wait(0.01):
            if cancelled is not None and cancelled():
                raise FlowCancelled
        return real(attentions, progress=progress, cancelled=cancelled)

    monkeypatch.setattr(engine_module, "attention_flow", held)
    return opened


def make_view(qtbot, result, session: Session | None = None):
    model = SessionModel(session or Session(backend="numpy"))
    results = ResultModel(model)
    view = FlowView(model, results)
    qtbot.addWidget(view)
    view.resize(1024, 700)
    view.show()
    qtbot.waitExposed(view)
    results.set_result(result)
    qtbot.wait(20)
    return view, model, results


def drawn(view) -> QImage:
    """The canvas as rendered, once its layout has settled (a loaded machine delays resizes and layouts)."""
    def geometry():
        return [(plot.sceneBoundingRect().getRect(), tuple(map(tuple, plot.getViewBox().viewRange())))
                for plot in (view.rollout_plot, view.flow_plot)]
    previous = None
    for _ in range(50):
        settle(view.canvas.scene())  # pending auto-ranges and layouts first, as an export does
        QApplication.processEvents()
        if geometry() == previous:
            break
        previous = geometry()
        time.sleep(0.02)
    return view.canvas.grab().toImage()


def cell_colour(view, image: QImage, plot, row: int, col: int) -> QColor:
    """The colour drawn at the centre of cell (row, col) of ``plot``, read from the rendered canvas."""
    scene_point = plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    point = view.canvas.mapFromScene(scene_point)
    ratio = image.devicePixelRatio()
    return QColor(image.pixel(round(point.x() * ratio), round(point.y() * ratio)))


def expected_colour(value: float) -> np.ndarray:
    return pg.colormap.get(WEIGHTS_COLORMAP).map(np.array([value]), mode="byte")[0][:3].astype(int)


def assert_panel_shows(view, plot, values: np.ndarray, no_path=HAND_NO_PATH) -> None:
    """Each cell of ``plot`` is drawn in the colour map's colour of ``values`` (0–1), the cells without a
    path between their tokens in the neutral grey."""
    image = drawn(view)
    for row in range(values.shape[0]):
        for col in range(values.shape[1]):
            colour = cell_colour(view, image, plot, row, col)
            got = np.array([colour.red(), colour.green(), colour.blue()])
            wanted = np.array(MASKED_RGBA[:3]) if (row, col) in no_path else expected_colour(values[row, col])
            assert np.abs(got - wanted).max() <= COLOUR_TOLERANCE, (row, col, values[row, col], got)


def test_the_view_draws_the_hand_computed_flow_and_rollout_until_it_is_ready(qtbot, gate):
    result = hand_result()
    view, _, _ = make_view(qtbot, result)
    qtbot.waitUntil(lambda: view.flows.busy)
    assert not view.flow_shown
    assert view.flow_plot.full_title == "flow computing (rollout shown)"
    assert_panel_shows(view, view.rollout_plot, HAND_ROLLOUT)
    assert_panel_shows(view, view.flow_plot, HAND_ROLLOUT)  # the rollout stands in for the flow
    gate.set()
    qtbot.waitUntil(lambda: view.flow_shown, timeout=10_000)
    assert np.abs(result.attention_flow() - HAND_FLOW).max() <= 1e-4
    assert view.flow_plot.full_title == "attention flow"
    assert_panel_shows(view, view.flow_plot, HAND_SHARES)  # 2/3, 1/3, 0 / .375, .375, .25 / 3/7, 2/7, 2/7
    assert_panel_shows(view, view.rollout_plot, HAND_ROLLOUT)
    assert view.colorbar.levels() == (0.0, 1.0)  # the session's 0–1 colour scale, one bar for both
    view.flow_plot.cell_hovered.emit(1, 0, 0.0)
    assert "rollout 0.375" in view.readout.text() and "max flow 0.75 of 1" in view.readout.text()
    assert not view.progress.isVisible() and not view.cancel.isVisible()


def test_an_export_draws_a_flow_that_finished_after_the_view_last_drew(qtbot, gate):
    """The CLI's race: the flow job finishes in its thread just as the view shuts its worker down, so the 'ready'
    signal is dropped and the view still draws the rollout in the flow panel; the export must draw the flow."""
    result = hand_result()
    view, _, _ = make_view(qtbot, result)
    qtbot.waitUntil(lambda: view.flows.busy)
    assert not view.flow_shown
    view.flows.shutdown()  # the export's shutdown: the held job ends cancelled, its answers are dropped
    gate.set()
    view.flows.wait()
    result.attention_flow()  # finished elsewhere (the worker's own call, in the real race): nobody told the view
    assert result.flow_ready() and not view.flow_shown
    view.export_target()
    assert view.flow_shown and view.flow_plot.full_title == "attention flow"
    assert_panel_shows(view, view.flow_plot, HAND_SHARES)


def test_cancel_keeps_the_rollout_and_compute_flow_restarts(qtbot, gate):
    view, _, _ = make_view(qtbot, hand_result())
    qtbot.waitUntil(lambda: view.flows.busy)
    assert view.cancel.isVisible()
    view.cancel.click()
    qtbot.waitUntil(lambda: not view.flows.busy)
    assert view.flow_plot.full_title == "flow cancelled (rollout shown)"
    assert "cancelled" in view.note.text()
    assert view.compute.isVisible()
    assert_panel_shows(view, view.flow_plot, HAND_ROLLOUT)
    view.flows.wait()
    gate.set()
    view.compute.click()
    qtbot.waitUntil(lambda: view.flow_shown, timeout=10_000)
    assert not view.compute.isVisible()
    assert_panel_shows(view, view.flow_plot, HAND_SHARES)


def test_the_toggle_shows_one_panel_with_the_same_colours(qtbot):
    view, _, _ = make_view(qtbot, hand_result())
    qtbot.waitUntil(lambda: view.flow_shown, timeout=10_000)
    view.shown.setCurrentIndex(view.shown.findData("flow"))
    qtbot.wait(200)
    assert not view.rollout_plot.isVisible() and view.flow_plot.isVisible()
    assert view.flow_plot.width() > 0.7 * view.canvas.width()  # it takes the room the rollout had
    assert_panel_shows(view, view.flow_plot, HAND_SHARES)
    view.shown.setCurrentIndex(view.shown.findData("rollout"))
    qtbot.wait(200)
    assert view.rollout_plot.isVisible() and not view.flow_plot.isVisible()
    assert_panel_shows(view, view.rollout_plot, HAND_ROLLOUT)
    view.shown.setCurrentIndex(view.shown.findData("both"))
    qtbot.wait(200)
    assert view.rollout_plot.isVisible() and view.flow_plot.isVisible()
    view.rollout_plot.getViewBox().setRange(xRange=(0, 2), yRange=(0, 2), padding=0)  # zoom one ...
    qtbot.wait(50)
    assert view.flow_plot.visible_cells() == pytest.approx((2, 2), abs=0.05)  # ... and both follow


def test_the_colour_scale_applies_to_both_panels(qtbot):
    view, model, _ = make_view(qtbot, hand_result())
    qtbot.waitUntil(lambda: view.flow_shown, timeout=10_000)
    model.update(color_scale="row")
    qtbot.wait(20)
    assert_panel_shows(view, view.flow_plot, HAND_SHARES / HAND_SHARES.max(axis=1, keepdims=True))
    assert_panel_shows(view, view.rollout_plot, HAND_ROLLOUT / HAND_ROLLOUT.max(axis=1, keepdims=True))
    assert "row max" in view.colorbar.getAxis("left").labelText


def test_a_causal_model_passes_flow_only_to_earlier_tokens(qtbot):
    session = Session(text="the cat sat down", model=str(PROJECT_ROOT / "tests" / "data" / "tiny-llama"),
                      backend="numpy")
    result = Engine().compute(session)
    assert result.causal_model
    view, _, _ = make_view(qtbot, result, session)
    qtbot.waitUntil(lambda: view.flow_shown, timeout=20_000)
    flow = result.attention_flow()
    n = flow.shape[0]
    assert np.all(flow[np.triu_indices(n, 1)] == 0) and np.all(np.diag(flow) > 0)
    image = drawn(view)
    grey = QColor(*MASKED_RGBA[:3])
    for row, col in ((0, 1), (0, n - 1), (n - 2, n - 1)):
        assert cell_colour(view, image, view.flow_plot, row, col) == grey
    assert "no path" in view.rollout_plot.mask_legend.text
    assert "Only earlier tokens" in view.note.text()


def test_cross_attention_is_refused_in_one_sentence(qtbot):
    session = Session(text="the cat", pair_text="a dog", backend="numpy")
    view, _, _ = make_view(qtbot, Engine().compute(session), session)
    assert not view.canvas.isVisible()
    assert "not defined for cross-attention" in view.note.text()
    assert not view.flows.busy


def test_cli_exports_the_flow_view_with_the_flow_drawn(tmp_path):
    """The exported flow panel is the flow, not the rollout standing in: MiniLM's rollout has a bright [CLS]
    column (about 0.6 of every row), its flow shares stay below 0.25."""
    out = tmp_path / "flow.png"
    done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "the cat sat on the mat", "--view", "flow",
                           "-o", str(out)], check=False, capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    image = QImage(str(out)).convertToFormat(QImage.Format_RGB888)
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = pixels[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(int)
    bright = (pixels[..., 1] > 140) & (pixels[..., 2] < 160) & (pixels[..., 0] < 200)  # viridis above ~0.5
    width = image.width()
    left, right = bright[:, : int(width * 0.45)].sum(), bright[:, int(width * 0.47): int(width * 0.9)].sum()
    assert left > 2000, left  # the rollout's [CLS] column
    assert right < left / 20, (left, right)


def test_a_new_result_cancels_the_flow_of_the_old_one_even_while_hidden(qtbot, gate):
    view, _, results = make_view(qtbot, hand_result())
    old = results.result
    qtbot.waitUntil(lambda: view.flows.busy)
    assert view.flows.result is old
    view.hide()
    results.set_result(hand_result())
    assert not view.flows.busy  # the old job stops at its next poll; nothing runs for a hidden tab
    view.flows.wait()
    assert not old.flow_ready()
    gate.set()
    view.show()
    qtbot.waitUntil(lambda: view.flow_shown, timeout=10_000)
    assert results.result.flow_ready()


def test_too_many_tokens_keep_the_rollout_and_say_why(qtbot):
    session = Session(text=" ".join(["cat"] * 140), backend="numpy")
    result = Engine().compute(session)
    view, _, _ = make_view(qtbot, result, session)
    assert not view.flows.busy and not view.flow_shown
    assert view.flow_plot.full_title == "flow not computed (rollout shown)"
    assert "Attention flow takes at most 128 tokens (this text has 142)" in view.note.text()
    assert not view.compute.isVisible()
    assert view.rollout_plot.isVisible() and not view.flow_plot.isVisible(), "one rollout panel, not two"


def shown_words(view: FlowView) -> list[str]:
    """Every text the view draws: its labels, the toggle's choice and buttons (where visible), the panel titles."""
    texts = [label.text() for label in (view.note, view.readout) if label.isVisible()]
    texts += [view.shown.currentText()] if view.shown.isVisible() else []
    texts += [button.text() for button in (view.cancel, view.compute) if button.isVisible()]
    texts += [plot.full_title for plot in (view.rollout_plot, view.flow_plot) if plot.isVisible()]
    return texts


def test_a_refused_flow_is_named_nowhere_but_in_the_reason(qtbot):
    """Over 128 tokens only the rollout is drawn: no toggle offers 'Rollout and flow', the hover hint and the
    hover read the rollout alone; with a short text again the toggle and the flow come back."""
    long_session = Session(text=" ".join(["cat"] * 140), backend="numpy")
    view, _, results = make_view(qtbot, Engine().compute(long_session), long_session)
    texts = shown_words(view)
    assert view.readout.text() == "Hover a cell to read its rollout.", texts
    assert not view.shown.isVisible()
    for text in texts:
        if "flow" in text.lower():
            assert "at most 128 tokens" in text, f"{text!r} names a flow that is not shown"
    image = view.grab().toImage()
    bar = view.readout.geometry()  # the bar's right of the readout holds the toggle when it is shown
    strip = image.copy(view.shown.parentWidget().width() - 220, bar.top(), 200, bar.height())
    greys = np.array([[QColor(strip.pixel(x, y)).lightness() for x in range(strip.width())]
                      for y in range(strip.height())])
    assert greys.std() < 2, "something is drawn where the toggle was"
    view.rollout_plot.cell_hovered.emit(1, 0, 0.0)
    assert view.readout.text().startswith("output ") and "flow" not in view.readout.text()
    view.rollout_plot.hover_cleared.emit()
    assert view.readout.text() == "Hover a cell to read its rollout."

    short = Engine().compute(Session(text="the cat sat", backend="numpy"))
    results.set_result(short)
    qtbot.waitUntil(lambda: view.flow_shown, timeout=20_000)
    assert view.shown.isVisible() and view.shown.currentText() == "Rollout and flow"
    assert view.readout.text() == "Hover a cell to read its rollout and flow."
    after = view.grab().toImage().copy(view.shown.geometry())
    assert len({after.pixel(x, y) for x in range(after.width()) for y in range(after.height())}) > 5, \
        "the toggle is drawn again"


def test_at_1024x700_the_colour_bar_stays_beside_the_flow_panel(qtbot, gate):
    """In a 1024x700 window the canvas is ~670 px wide: the pending flow title once held the flow panel wider
    than its column, so the colour bar covered the last column ([SEP]) and its label was drawn over the matrix."""
    session = Session(text="The cat sat on the mat because it was tired.", backend="numpy")
    view, _, _ = make_view(qtbot, Engine().compute(session), session)
    view.resize(670, 620)
    qtbot.waitUntil(lambda: view.flows.busy)
    assert view.flow_plot.full_title == "flow computing (rollout shown)"
    image = drawn(view)
    bar = view.colorbar.sceneBoundingRect()
    for plot in (view.rollout_plot, view.flow_plot):
        box, panel = plot.getViewBox().sceneBoundingRect(), plot.sceneBoundingRect()
        assert box.right() <= panel.right() + 1 and box.right() <= bar.left(), (plot.full_title, box, panel, bar)
    values = view.displays["flow"].values  # (13, 13): the rollout standing in, on the 0–1 scale
    last = values.shape[1] - 1
    for row in range(values.shape[0]):
        colour = cell_colour(view, image, view.flow_plot, row, last)
        got = np.array([colour.red(), colour.green(), colour.blue()])
        assert np.abs(got - expected_colour(values[row, last])).max() <= COLOUR_TOLERANCE, (row, got)
