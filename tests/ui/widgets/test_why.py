"""The "Why this score" view draws the cell's q, k, q⊙k and softmax row, and its head finder jumps."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views import VIEW_CLASSES
from attnstudio.ui.views.why import WhyView
from attnstudio.view_names import VIEW_NAMES
from tests.ui.conftest import build_view
from tests.ui.looks import pixels


def test_view_registry_and_names_agree():
    assert tuple(VIEW_CLASSES) == VIEW_NAMES


@pytest.fixture
def why(qtbot):
    view, session, _, result = build_view(qtbot, WhyView, Session(backend="numpy", layer=1, head=4, cell=(8, 2),
                                                                  temperature=0.5))
    return view, session, result


def bar_heights(bar_item) -> np.ndarray:
    return np.asarray(bar_item.opts["height"])


def test_bars_are_the_cells_numbers(why):
    view, session, result = why
    trace = result.forward.traces[1]
    np.testing.assert_allclose(bar_heights(view.bars["q"]), trace.queries[4, 8], atol=1e-6)
    np.testing.assert_allclose(bar_heights(view.bars["k"]), trace.keys[4, 2], atol=1e-6)
    np.testing.assert_allclose(bar_heights(view.bars["product"]), trace.queries[4, 8] * trace.keys[4, 2], atol=1e-6)
    np.testing.assert_allclose(bar_heights(view.bars["softmax"]), trace.weights[4, 8], atol=1e-6)
    weight = float(trace.weights[4, 8, 2])
    assert bar_heights(view.selected_bar)[0] == pytest.approx(weight, abs=1e-6)
    assert list(view.selected_bar.opts["x"]) == [2]
    assert view.selected_bar.opts["brush"].color() == theme.color("accent")
    text = view.formula.text()
    assert f"{weight:.4f}" in text and "temperature 0.5" in text and "layer 2 · head 5" in text
    assert f"{float(trace.scores[4, 8, 2]):.4g}" in text
    assert "'it' (row 8)" in view.plots["q"].titleLabel.text and "'cat'" in view.plots["k"].titleLabel.text


def test_the_accent_bar_is_drawn(why):
    view, _, _ = why
    image = pixels(view.canvas)
    accent = np.array(theme.THEMES["light"]["accent"])
    assert (np.abs(image[..., :3].astype(int) - accent).sum(axis=-1) < 10).sum() > 20


def test_head_finder_ranks_and_jumps(why, qtbot):
    view, session, result = why
    cell = result.attentions()[:, :, 8, 2]
    first = view.finder.item(0)
    layer, head = first.data(Qt.UserRole)
    assert cell[layer, head] == cell.max()
    assert first.text().startswith(f"L{layer + 1}·H{head + 1}") and f"{cell.max():.3f}" in first.text()
    assert view.finder.count() == cell.size
    assert view.finder.currentItem().data(Qt.UserRole) == (1, 4)
    assert "'it' → 'cat'" in view.finder_title.text()
    target = view.finder.item(3).data(Qt.UserRole)
    view.finder.itemClicked.emit(view.finder.item(3))
    assert (session.session.layer, session.session.head) == target
    assert view.finder.currentItem().data(Qt.UserRole) == target  # the list follows the focused head


def test_choosing_a_key_updates_the_cell(why, qtbot):
    view, session, result = why
    view.key_choice.activated.emit(5)
    assert session.session.cell == (8, 5)
    np.testing.assert_allclose(bar_heights(view.bars["k"]), result.forward.traces[1].keys[4, 5], atol=1e-6)
    assert view.key_choice.currentText() == f"5: {result.key_tokens[5]}"


def test_additive_score_says_why_there_are_no_bars(qtbot):
    session = SessionModel(Session(backend="numpy", score="additive"))
    results = ResultModel(session)
    view = WhyView(session, results)
    qtbot.addWidget(view)
    view.show()
    results.set_result(Engine().compute(session.session))
    assert not view.canvas_area.isVisible() and "dot-product" in view.formula.text()


def test_a_cell_set_in_the_session_is_explained(why, qtbot):
    view, session, result = why
    session.update(cell=(3, 6))
    trace = result.forward.traces[1]
    qtbot.waitUntil(lambda: list(view.selected_bar.opts["x"]) == [6])
    np.testing.assert_allclose(bar_heights(view.bars["q"]), trace.queries[4, 3], atol=1e-6)
    np.testing.assert_allclose(bar_heights(view.bars["k"]), trace.keys[4, 6], atol=1e-6)
    assert bar_heights(view.selected_bar)[0] == pytest.approx(float(trace.weights[4, 3, 6]), abs=1e-6)
    assert view.query_choice.currentText() == f"3: {result.query_tokens[3]}"
    assert f"{float(trace.weights[4, 3, 6]):.4f}" in view.formula.text()
