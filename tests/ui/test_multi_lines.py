"""The multi-head Lines view: chosen heads drawn together, one colour each, opacity = weight, hover reads a line."""
from __future__ import annotations

import itertools
import json

import numpy as np
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from attnstudio.session import Session
from attnstudio.ui.views.lines import MIN_WEIGHT
from attnstudio.ui.views.multi_lines import HEAD_COLORS, MultiLinesView, head_color, segment_distances
from tests.ui.conftest import build_view
from tests.ui.looks import pixels
from tests.ui.test_look_geometry import LONG_TEXT


def hover(widget, x: float, y: float) -> None:
    point = QPointF(x, y)
    QApplication.sendEvent(widget, QMouseEvent(QEvent.MouseMove, point, widget.mapToGlobal(point), Qt.NoButton,
                                               Qt.NoButton, Qt.NoModifier))


def test_segment_distances():
    starts = np.array([[0.0, 0.0], [0.0, 0.0]])
    ends = np.array([[10.0, 0.0], [0.0, 10.0]])
    np.testing.assert_allclose(segment_distances((5.0, 3.0), starts, ends), [3.0, 5.0])
    np.testing.assert_allclose(segment_distances((-4.0, 0.0), starts, ends), [4.0, 4.0])  # past the ends


def test_every_head_by_default_and_the_legend_chooses(qtbot):
    view, model, _, result = build_view(qtbot, MultiLinesView, Session(backend="numpy", layer=2))
    assert [box.text() for box in view.head_boxes] == [f"H{h + 1}" for h in range(12)]
    assert all(box.isChecked() for box in view.head_boxes) and view.chosen_heads() == list(range(12))
    assert view.title().startswith("layer 3, all heads")
    for head in (0, 1, 3, 4, 5, 6, 7, 8, 9, 10):
        view.head_boxes[head].setChecked(False)
    assert model.session.lines_heads == (2, 11)
    assert view.chosen_heads() == [2, 11] and view.title().startswith("layer 3, heads 3, 12")
    heads, query, key = view.canvas.drawn_lines()
    weights = result.attentions()[2]
    expected = sorted((h, i, j) for h in (2, 11) for i, j in zip(*np.nonzero(weights[h] >= MIN_WEIGHT), strict=True))
    assert sorted(zip(heads.tolist(), query.tolist(), key.tolist(), strict=True)) == expected
    view.head_boxes[2].setChecked(False)
    view.head_boxes[11].setChecked(False)  # the last head cannot be unticked: an empty view says nothing
    assert model.session.lines_heads == (11,) and view.head_boxes[11].isChecked()


def test_lines_are_drawn_in_their_heads_colour_with_opacity_weight(qtbot):
    view, model, _, result = build_view(qtbot, MultiLinesView, Session(model="smollm2", backend="numpy", layer=2))
    weights = result.attentions()[2]
    # a head whose first query puts all its weight on the first key (causal): a fully opaque horizontal line
    head = 4
    assert weights[head, 0, 0] > 0.999
    model.update(lines_heads=(head,))
    qtbot.wait(20)
    image = pixels(view.canvas)
    (start,), (end,) = view.canvas.line_ends(np.array([0]), np.array([0]))
    x, y = int((start[0] + end[0]) / 2), round(start[1])
    colour = np.array(HEAD_COLORS[head])
    assert np.abs(image[y, x].astype(int) - colour).max() <= 25, image[y, x]
    # a faint line is the head's colour at opacity = weight over the background (one query's lines alone)
    faint = [(i, j) for i in range(weights.shape[1]) for j in range(i) if 0.15 < weights[head, i, j] < 0.4]
    i, j = faint[0]
    view.canvas.hovered_row = i
    view.canvas.repaint()
    image = pixels(view.canvas)
    (start,), (end,) = view.canvas.line_ends(np.array([i]), np.array([j]))
    near_key = start * 0.1 + end * 0.9  # where this query's lines have fanned apart
    x, y = round(near_key[0]), round(near_key[1])
    painted = image[y - 2:y + 3, x - 1:x + 2].reshape(-1, 3).astype(int)
    background = np.array(view.canvas.palette().color(view.canvas.backgroundRole()).getRgb()[:3])
    weight = float(weights[head, i, j])
    blended = colour * weight + background * (1 - weight)
    assert np.abs(painted - blended).max(axis=1).min() <= 30, (painted, blended)
    assert np.abs(painted - colour).max(axis=1).min() > 40, "not drawn at full strength"
    assert head_color(head).getRgb()[:3] == tuple(HEAD_COLORS[head])


def test_hovering_a_line_reads_head_tokens_and_weight(qtbot):
    view, model, _, result = build_view(qtbot, MultiLinesView, Session(backend="numpy", layer=1))
    model.update(lines_heads=(3, 8))
    qtbot.wait(20)
    weights = result.attentions()[1]
    head = 8
    i, j = np.unravel_index(np.argmax(weights[head] * (np.arange(13)[:, None] != np.arange(13))), (13, 13))
    (start,), (end,) = view.canvas.line_ends(np.array([i]), np.array([j]))
    hover(view.canvas, *(start * 0.4 + end * 0.6))
    line = view.canvas.hovered_line
    assert line is not None and line[0] in (3, 8)
    h, q, k = line
    assert view.readout.text() == (f"L2·H{h + 1}: {result.query_tokens[q]!r} (row {q}) → {result.key_tokens[k]!r} "
                                   f"(col {k}): weight {weights[h, q, k]:.4f}")
    assert view.canvas.toolTip() == view.readout.text()
    hover(view.canvas, 2, view.canvas.height() - 2)
    assert view.canvas.hovered_line is None and view.readout.text().startswith("Hover a query token")


def test_readable_at_128_tokens(qtbot):
    text = " ".join(LONG_TEXT.split()[:119])
    view, _, _, result = build_view(qtbot, MultiLinesView, Session(text=text, backend="numpy"))
    assert len(result.query_tokens) == 128
    assert view.scroll.verticalScrollBar().maximum() > 0, "rows keep a readable height and scroll"
    boxes = [box for side, box, _ in view.canvas.label_boxes() if side == "query"]
    assert all(a.bottom() <= b.top() + 0.01 for a, b in itertools.pairwise(boxes)), "labels never overlap"
    assert view.canvas.row_height() >= 12


def test_chosen_heads_are_saved_and_old_sessions_load(tmp_path):
    session = Session(lines_heads=(1, 4))
    path = tmp_path / "s.attnsession"
    session.save(path)
    assert Session.load(path).lines_heads == (1, 4)
    document = json.loads(path.read_text())
    del document["session"]["lines_heads"]  # a session saved before the field existed
    path.write_text(json.dumps(document))
    assert Session.load(path).lines_heads == ()
