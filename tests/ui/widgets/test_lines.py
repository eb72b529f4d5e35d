"""The lines view alone with its models: a new head redraws the lines with that head's weights."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF

from attnstudio.session import Session
from attnstudio.ui.views.lines import MIN_WEIGHT, TOP, LinesView
from tests.ui.conftest import build_view
from tests.ui.looks import pixels


def line_ink(view, query: int, key: int) -> int:
    """How far from the background the middle of the query→key line is painted (0: nothing drawn there)."""
    canvas = view.canvas
    left_x, right_x = canvas.columns()
    row = canvas.row_height()
    middle = QPointF((left_x + right_x) / 2, TOP + (query + key + 1) * row / 2)
    image = pixels(canvas).astype(int)
    background = image[int(TOP) + 2, 2]
    x, y = round(middle.x()), round(middle.y())
    return int(np.abs(image[y - 1:y + 2, x - 1:x + 2] - background).sum(axis=-1).max())


def test_choosing_a_head_redraws_the_lines_with_its_weights(qtbot):
    view, session_model, results, result = build_view(qtbot, LinesView, Session(backend="numpy", layer=3, head=0))
    weights = result.attentions()[3]  # (heads, n_q, n_k)
    # a (query, key) that one head leaves undrawn and another draws strongly
    candidates = [(weights[h_strong, i, j], h_none, h_strong, i, j)
                  for i in range(weights.shape[1]) for j in range(weights.shape[2]) if abs(i - j) > 2
                  for h_none in range(weights.shape[0]) if weights[h_none, i, j] < MIN_WEIGHT
                  for h_strong in range(weights.shape[0])]
    _, h_none, h_strong, query, key = max(candidates)
    assert weights[h_strong, query, key] > 0.5
    canvas = view.canvas
    canvas.hovered_row = query  # only this query's lines: the middle of one line is its own
    session_model.update(head=h_none)
    qtbot.waitUntil(lambda: results.head == h_none)
    canvas.repaint()
    assert line_ink(view, query, key) < 40

    session_model.update(head=h_strong)
    qtbot.waitUntil(lambda: results.head == h_strong)
    canvas.repaint()
    assert line_ink(view, query, key) > 150
