"""The next-token view alone with its models: a decoder's predictions as bars; clicking one extends the text."""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.views.next_token import NextTokenView
from tests.ui.conftest import build_view

TEXT = "The cat sat on the"


def test_bars_are_the_predictions_and_a_click_appends_the_token(qtbot):
    view, session_model, results, result = build_view(qtbot, NextTokenView,
                                                      Session(text=TEXT, model="smollm2", backend="numpy"))
    candidates = result.next_tokens
    assert candidates and view.canvas.isVisible()
    widths = list(view.bars.opts["width"])
    assert widths == [candidate.probability * 100 for candidate in candidates]
    assert [item.toPlainText() for item in view.values[:len(candidates)]] == \
        [f"{candidate.probability:.1%}" for candidate in candidates]
    assert "after '␣the'" in view.plot.titleLabel.text

    top_bar = view.plot.vb.mapViewToScene(QPointF(widths[0] / 2, 0))  # the most likely token: the top row
    QTest.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=view.canvas.mapFromScene(top_bar))
    qtbot.waitUntil(lambda: session_model.session.text == TEXT + candidates[0].text)


def test_an_encoder_result_says_it_predicts_no_next_token(qtbot):
    view, session_model, results, result = build_view(qtbot, NextTokenView,
                                                      Session(text=TEXT, model="smollm2", backend="numpy"))
    session_model.update(model="minilm")
    results.set_result(Engine().compute(session_model.session))  # what the compute worker would publish
    qtbot.waitUntil(lambda: "has no language-model head" in view.note.text())
    assert not view.canvas.isVisible()
