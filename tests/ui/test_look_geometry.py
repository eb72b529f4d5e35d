"""Every view is usable at 1024x700 and at 512 tokens: nothing clipped, one scroll bar in the dock,
the heatmap zooms and pans, Lines labels never overlap, and launch shows a neutral state."""
from __future__ import annotations

import itertools

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from attnstudio.core.profiling import ProfileConfig, run_profile
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.main_window import MainWindow
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views import VIEW_CLASSES
from attnstudio.ui.views.base import WAITING_TEXT
from attnstudio.ui.views.heatmap import HeatmapView
from attnstudio.ui.views.lines import LinesView
from attnstudio.ui.views.matrix import MatrixPlot
from tests.ui.conftest import wait_for_result
from tests.ui.looks import clipped_panels, pixels, reachable, scroll_areas_needing

SENTENCE = "Attention mechanisms allow a model to focus on the parts of the input that matter most."  # 17 tokens
LONG_TEXT = " ".join([SENTENCE] * 30)  # 30 x 17 + [CLS], [SEP] = 512 tokens
SMALL = (1024, 700)


@pytest.fixture(scope="module")
def long_result():
    computed = Engine().compute(Session(text=LONG_TEXT, backend="numpy"))
    computed.precompute_views()
    assert len(computed.query_tokens) == 512
    return computed


def settle(qtbot, passes: int = 5):
    """Let layouts settle: a panel that shrinks re-lays out its title, which can shrink it again."""
    for _ in range(passes):
        qtbot.wait(15)


def shown(qtbot, view, size=(700, 560)):
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    return view


def check_every_view(window, qtbot) -> list[str]:
    problems = []
    for key, view in window.views.items():
        window.session_model.update(view=key)
        qtbot.wait(40)
        problems += clipped_panels(view, window)
    return problems


@pytest.mark.parametrize("text", ["default", "512 tokens"])
def test_every_view_fits_a_small_window(make_window, qtbot, text):
    session = Session(backend="numpy") if text == "default" else Session(text=LONG_TEXT, backend="numpy")
    window = make_window(session)
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SMALL)
    qtbot.wait(50)
    assert check_every_view(window, qtbot) == []
    dock = window.controls_dock.widget()
    assert scroll_areas_needing(dock, "horizontal") == [], "the control dock needs no horizontal scroll bar"
    assert window.controls.width() <= dock.viewport().width(), "the controls fit the dock's width"
    model = window.controls.model
    bottom = model.mapTo(window.controls, QPoint(0, model.height())).y()
    assert bottom <= dock.viewport().height(), "the model controls are in view without scrolling"


def test_the_pipeline_scrolls_instead_of_cutting_off_panels(qtbot, long_result):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, VIEW_CLASSES["pipeline"](session, results), size=(640, 560))
    results.set_result(long_result)
    qtbot.wait(30)
    assert view.columns == 2
    assert view.scroll.verticalScrollBar().maximum() > 0, "the lower panels are reached by scrolling"
    assert clipped_panels(view, view) == []
    view.resize(1200, 900)
    qtbot.waitUntil(lambda: view.columns == 4)
    assert clipped_panels(view, view) == []


def test_reachable_catches_a_cut_off_panel(qtbot):
    """The geometry check itself fails on a panel that runs past its canvas (the old Pipeline at 1024x700)."""
    canvas = pg.GraphicsLayoutWidget()
    for column in range(4):
        plot = canvas.addPlot(row=0, col=column)
        plot.setMinimumWidth(300)
    shown(qtbot, canvas, size=(600, 300))
    qtbot.wait(50)
    assert clipped_panels(canvas, canvas), "four 300 px panels do not fit 600 px"
    assert reachable(canvas, canvas.rect(), canvas) is None


# --- the heatmap zooms and pans ---------------------------------------------------------------------------

def cell_edges(row_pixels: np.ndarray) -> int:
    """How many colour changes a line of pixels crosses."""
    return int((np.abs(np.diff(row_pixels.astype(int), axis=0)).sum(-1) > 30).sum())


def wheel(qtbot, canvas, point: QPointF, steps: int):
    event = QWheelEvent(point, canvas.viewport().mapToGlobal(point), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(canvas.viewport(), event)
    qtbot.wait(20)


def send_mouse(widget, kind, point, buttons):
    point = QPointF(point)
    event = QMouseEvent(kind, point, widget.mapToGlobal(point), Qt.LeftButton, buttons, Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(qtbot, widget, start: QPoint, end: QPoint, steps: int = 10):
    """A left-button drag as a mouse sends it: press, moves with the button held, release."""
    send_mouse(widget, QEvent.MouseButtonPress, start, Qt.LeftButton)
    for step in range(1, steps + 1):
        send_mouse(widget, QEvent.MouseMove, start + (end - start) * step / steps, Qt.LeftButton)
        qtbot.wait(5)
    send_mouse(widget, QEvent.MouseButtonRelease, end, Qt.NoButton)
    qtbot.wait(20)


def double_click(qtbot, widget, point: QPoint):
    """The events a real double-click sends: press, release, double-click, release."""
    for kind, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton),
                          (QEvent.MouseButtonDblClick, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton)):
        send_mouse(widget, kind, point, buttons)
    qtbot.wait(20)


def test_the_heatmap_zooms_pans_and_resets(qtbot, long_result):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, HeatmapView(session, results), size=(900, 700))
    results.set_result(long_result)
    qtbot.wait(30)
    plot = view.plot
    # A striped matrix: every column differs from its neighbour, so each cell edge is a colour change.
    stripes = np.tile((np.arange(64) % 2).astype(np.float32), (64, 1))
    plot.set_matrix(stripes, levels=(0.0, 1.0))
    qtbot.wait(30)
    image_rect = view.canvas.mapFromScene(plot.image.sceneBoundingRect()).boundingRect()
    middle = image_rect.center().y()
    before = cell_edges(pixels(view.canvas)[middle, image_rect.left() + 2:image_rect.right() - 2])
    ticks_before = plot.getAxis("top")._labels

    centre = QPointF(view.canvas.mapFromScene(plot.getViewBox().sceneBoundingRect().center()))
    wheel(qtbot, view.canvas, centre, 6)
    rows, cols = plot.visible_cells()
    assert plot.is_zoomed() and cols < 40 and rows < 40, "the wheel zoomed in"
    after = cell_edges(pixels(view.canvas)[middle, image_rect.left() + 2:image_rect.right() - 2])
    assert after < before * 0.75, f"fewer, larger cells on screen ({before} edges before, {after} after)"
    ticks_after = plot.getAxis("top")._labels
    spacing = lambda ticks: np.diff([value for value, _ in ticks]).min()  # noqa: E731
    assert spacing(ticks_after) <= spacing(ticks_before), "the column labels re-thin as it zooms in"
    assert all(0 <= value <= 64 for value, _ in ticks_after)

    (x0, _), _ = plot.getViewBox().viewRange()
    start = view.canvas.mapFromScene(plot.getViewBox().sceneBoundingRect().center())
    drag(qtbot, view.canvas.viewport(), start, start + QPoint(80, 0))
    (x0_after, _), _ = plot.getViewBox().viewRange()
    assert x0_after < x0, "dragging right pans towards the first columns"

    view.reset_zoom.click()
    assert not plot.is_zoomed()
    assert view.reset_zoom.toolTip()
    wheel(qtbot, view.canvas, centre, 4)
    assert plot.is_zoomed()
    point = view.canvas.mapFromScene(plot.getViewBox().sceneBoundingRect().center())
    double_click(qtbot, view.canvas.viewport(), point)
    qtbot.waitUntil(lambda: not plot.is_zoomed())


def test_zoom_stays_inside_the_matrix(qtbot, long_result):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, HeatmapView(session, results))
    results.set_result(long_result)
    qtbot.wait(30)
    centre = QPointF(view.canvas.mapFromScene(view.plot.getViewBox().sceneBoundingRect().center()))
    wheel(qtbot, view.canvas, centre, -10)  # zooming out never shows past the edges
    (x0, x1), (y0, y1) = view.plot.getViewBox().viewRange()
    assert x0 >= -1e-6 and y0 >= -1e-6 and x1 <= 512 + 1e-6 and y1 <= 512 + 1e-6


def test_token_axes_never_show_si_prefixes(qtbot):
    plot = MatrixPlot(axis_titles=("query", "key"))
    for axis in (plot.getAxis("left"), plot.getAxis("top")):
        for low, high in ((-0.4, 0.4), (0, 0.001), (0, 5e6)):
            axis.setRange(low, high)
            assert "(x" not in axis.labelString() and axis.labelString().count("(") == 0


# --- Lines -----------------------------------------------------------------------------------------------

def test_lines_labels_never_overlap_and_the_view_scrolls(qtbot, long_result):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, LinesView(session, results), size=(700, 560))
    results.set_result(long_result)
    qtbot.wait(30)
    boxes = view.canvas.label_boxes()
    for side in ("query", "key"):
        column = sorted((box for s, box, _ in boxes if s == side), key=lambda box: box.top())
        assert len(column) >= 512 // 2, "most tokens are labelled"
        assert all(a.bottom() <= b.top() + 1e-6 for a, b in itertools.pairwise(column)), f"{side} labels overlap"
    assert view.canvas.label_font().pixelSize() >= 9, "labels stay readable"
    assert view.scroll.verticalScrollBar().maximum() > 0, "512 rows scroll instead of shrinking to 1 px"
    assert reachable(view.canvas, view.canvas.rect(), view) is None
    # Pixels: the key labels column shows separate lines of text, as many as the boxes in view.
    image = pixels(view.canvas)
    x_from = int(view.canvas.columns()[1] + 8)
    label_column = image[:, x_from:x_from + 60]
    background = np.median(label_column.reshape(-1, 3), axis=0)
    ink_rows = (np.abs(label_column.astype(int) - background).sum(-1) > 80).any(axis=1)
    bands = int((np.diff(ink_rows.astype(int)) == 1).sum())
    visible = [box for s, box, _ in boxes if s == "key" and box.bottom() < image.shape[0]]
    assert bands >= 0.9 * len(visible), f"{bands} separate text lines for {len(visible)} labels"


def test_lines_fits_a_short_sentence_without_scrolling(qtbot):
    computed = Engine().compute(Session(backend="numpy"))
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, LinesView(session, results), size=(700, 560))
    results.set_result(computed)
    qtbot.wait(30)
    assert view.scroll.verticalScrollBar().maximum() == 0
    assert view.canvas.row_height() == pytest.approx(18.0)


# --- launch --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [key for key in VIEW_CLASSES if key != "profiler"])
def test_before_the_first_result_a_view_says_computing(qtbot, key):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, VIEW_CLASSES[key](session, results))
    qtbot.wait(20)
    assert view.waiting.isVisible() and view.waiting.text() == WAITING_TEXT
    image = pixels(view)
    background = np.median(image.reshape(-1, 3), axis=0)
    ink = (np.abs(image.astype(int) - background).sum(-1) > 60).mean()
    assert 0 < ink < 0.01, "only the word 'Computing…' on a plain sheet: no empty axes"
    results.set_result(Engine().compute(Session(backend="numpy")))
    qtbot.wait(30)
    assert not view.waiting.isVisible()
    assert pixels(view).std() > 10


def test_the_window_paints_before_the_first_compute(make_window, qtbot, settings):
    window = MainWindow(Session(backend="numpy"), settings=settings, restore=False)
    qtbot.addWidget(window)
    assert window.controller.requests == 0, "no compute competes with the first paint"
    with qtbot.waitSignal(window.first_result, timeout=30_000):
        window.show()
    wait_for_result(qtbot, window, lambda r: len(r.query_tokens) == 13)
    window.controller.shutdown()


@pytest.mark.parametrize("key", [key for key in VIEW_CLASSES if key != "profiler"])
@pytest.mark.parametrize("size", [(600, 460), (480, 420)])
def test_each_view_alone_fits_a_narrow_tab(qtbot, long_result, key, size):
    """The tab area a 1024x700 window leaves beside a widened dock, and narrower still."""
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, VIEW_CLASSES[key](session, results), size=size)
    results.set_result(long_result)
    settle(qtbot)
    assert clipped_panels(view, view) == []


def test_the_profiler_shows_a_sentence_until_it_has_measurements(qtbot):
    session = SessionModel(Session(backend="numpy"))
    view = shown(qtbot, VIEW_CLASSES["profiler"](session))
    assert view.empty_note.isVisible() and not view.canvas.isVisible(), "no empty log axes before a sweep"
    profile = run_profile(ProfileConfig(lengths=(16, 32), kernels=("naive",), heads=1, d_k=8, repeats=1).validate())
    session.update(profile=profile.to_json_dict())
    qtbot.wait(20)
    assert view.canvas.isVisible() and not view.empty_note.isVisible()


def test_a_long_token_list_stays_small_and_folds_away(make_window, qtbot):
    window = make_window(Session(text=" ".join([SENTENCE] * 28), backend="numpy"))  # 478 tokens
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SMALL)
    settle(qtbot)
    controls = window.controls
    assert controls.tokens_toggle.text() == f"{len(window.results.result.query_tokens)} tokens"
    line = controls.tokens.fontMetrics().lineSpacing()
    assert controls.tokens_box.height() <= 5 * line + 10, "a few lines that scroll, not a 20-line wall"
    assert controls.tokens_box.verticalScrollBar().maximum() > 0, "every token is still there to scroll to"
    model_top = controls.model.mapTo(controls, QPoint(0, 0)).y()
    controls.tokens_toggle.click()
    qtbot.wait(30)
    assert not controls.tokens_box.isVisible()
    assert controls.model.mapTo(controls, QPoint(0, 0)).y() < model_top - 3 * line, "folding moves the model up"
    controls.tokens_toggle.click()
    qtbot.wait(30)
    assert controls.tokens_box.isVisible()


def test_a_failed_first_compute_says_why_instead_of_computing(qtbot, settings):
    window = MainWindow(Session(model="/nowhere/model", backend="numpy"), settings=settings, restore=False)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.controller.failed, timeout=30_000):
        window.show()
    heatmap = window.views["heatmap"]
    assert heatmap.waiting.isVisible()
    assert heatmap.waiting.text() == "No result yet: model folder /nowhere/model does not exist (moved or deleted?)"
    window.controller.shutdown()


def test_lines_hover_highlights_one_row_and_survives_a_shorter_text(qtbot, long_result):
    session = SessionModel(Session(backend="numpy"))
    results = ResultModel(session)
    view = shown(qtbot, LinesView(session, results), size=(700, 560))
    results.set_result(long_result)
    qtbot.wait(30)
    canvas = view.canvas
    row = canvas.row_height()
    y = int(28 + 20.5 * row)  # the middle of query row 20
    qtbot.mouseMove(canvas, QPoint(int(canvas.columns()[0]) - 30, y))
    qtbot.waitUntil(lambda: view.hovered_row == 20)
    results.set_result(Engine().compute(Session(backend="numpy")))  # 13 tokens: row 20 is gone
    qtbot.wait(30)
    assert pixels(canvas).std() > 5 and view.hovered_row is None


def test_the_head_ranking_of_why_is_not_cut_at_1024x700(make_window, qtbot):
    """Every ranked head's line ("L1·H3   1.000") fits the list beside the plots: its text is narrower than the
    viewport, and the rendered list leaves a blank margin at its right edge (cut text runs into it)."""
    window = make_window(Session(backend="numpy"))
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SMALL)
    window.session_model.update(view="why")
    why = window.views["why"]
    qtbot.waitUntil(lambda: why.finder.count() == 72, timeout=10_000)  # 6 layers x 12 heads
    settle(qtbot)
    finder = why.finder
    metrics = finder.fontMetrics()
    room = finder.viewport().width()
    for index in range(finder.count()):
        item = finder.item(index)
        assert metrics.horizontalAdvance(item.text()) + 4 <= room, (item.text(), room)
    image = pixels(finder.viewport()).astype(int)  # (h, w, 3)
    drawn_rows = 0
    for index in range(finder.count()):
        rect = finder.visualItemRect(finder.item(index))
        if rect.top() < 0 or rect.bottom() >= image.shape[0]:
            continue
        margin = image[rect.top():rect.bottom(), -4:]  # a row's right edge: its background (or selection) only
        assert np.ptp(margin, axis=(0, 1)).max() <= 40, f"{finder.item(index).text()!r} runs into the list's edge"
        drawn_rows += 1
    assert drawn_rows > 10
