"""The Lines view with several heads at once (BertViz's head view): one colour per head, opacity = weight.

Tick the heads to draw in the legend above; hover a query token to see only its lines, hover a line to
read it (head, query token → key token, weight). Rows keep a readable height and scroll, as in Lines.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.lines import MIN_WEIGHT, TOP, LinesCanvas

# Distinct on both themes' backgrounds (tab10 without its grey, and two more); more heads take golden-angle hues.
HEAD_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 200, 0), (0, 128, 128), (120, 120, 230)]
LEGEND_COLUMNS = 8  # head check boxes per row at most
HOVER_DISTANCE = 5.0  # px: a line this close to the mouse is the hovered one
HINT = "Hover a query token for its lines only; hover a line to read its weight."


def head_color(head: int) -> QColor:
    """The colour of ``head`` (0-based) in this view and its legend."""
    if head < len(HEAD_COLORS):
        return QColor(*HEAD_COLORS[head])
    return QColor.fromHsvF((head * 0.618034) % 1.0, 0.75, 0.85)


def segment_distances(point: tuple[float, float], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distance from ``point`` to each segment starts[m] -> ends[m] ((m, 2) arrays), (m,)."""
    p = np.asarray(point, dtype=np.float64)
    direction = ends - starts  # (m, 2)
    length2 = np.maximum((direction ** 2).sum(axis=1), 1e-12)
    t = np.clip(((p - starts) * direction).sum(axis=1) / length2, 0.0, 1.0)  # (m,) nearest point's fraction
    nearest = starts + t[:, None] * direction
    return np.sqrt(((nearest - p) ** 2).sum(axis=1))


class MultiLinesCanvas(LinesCanvas):
    """Paints the chosen heads' lines over each other; knows which line is under the mouse."""

    def __init__(self, view: MultiLinesView):
        super().__init__(view)
        self.hovered_line: tuple[int, int, int] | None = None  # (head, query, key)
        self.setToolTip("")

    def line_ends(self, query: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start (query side) and end (key side) points of the lines query[m] -> key[m], (m, 2) each."""
        row = self.row_height()
        left_x, right_x = self.columns()
        starts = np.stack([np.full(query.size, left_x + 4.0), TOP + (query + 0.5) * row], axis=1)
        ends = np.stack([np.full(key.size, right_x - 4.0), TOP + (key + 0.5) * row], axis=1)
        return starts, ends

    def drawn_lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(head, query, key) of every line drawn now (weight >= MIN_WEIGHT; the hovered row only, if any)."""
        weights = self.view.head_weights()  # (chosen heads, n_q, n_k)
        chosen = np.asarray(self.view.chosen_heads(), dtype=np.int64)
        visible = weights >= MIN_WEIGHT
        if self.hovered_row is not None:
            only = np.zeros_like(visible)
            only[:, self.hovered_row] = visible[:, self.hovered_row]
            visible = only
        slot, query, key = np.nonzero(visible)
        return chosen[slot], query, key

    def line_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        """The (head, query, key) of the drawn line nearest (x, y), within HOVER_DISTANCE px; the heavier wins a tie."""
        heads, query, key = self.drawn_lines()
        if heads.size == 0:
            return None
        starts, ends = self.line_ends(query, key)
        distance = segment_distances((x, y), starts, ends)
        close = np.flatnonzero(distance <= HOVER_DISTANCE)
        if close.size == 0:
            return None
        weights = self.view.results.result.attentions()[self.view.results.layer]
        best = max(close, key=lambda m: (-round(float(distance[m]), 1), weights[heads[m], query[m], key[m]]))
        return int(heads[best]), int(query[best]), int(key[best])

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        colors = self.view.text_colors()
        result = self.view.results.result
        if result is None:
            return
        chosen = self.view.chosen_heads()
        weights = result.attentions()[self.view.results.layer]  # (heads, n_q, n_k)
        if self.hovered_row is not None and self.hovered_row >= weights.shape[1]:
            self.hovered_row = None  # a shorter text arrived under the mouse
        painter.setPen(colors["label"][0])
        painter.drawText(QRectF(0, 4, self.width(), 20), Qt.AlignCenter, self.view.title())
        clip_top, clip_bottom = event.rect().top(), event.rect().bottom()
        heads, query, key = self.drawn_lines()
        starts, ends = self.line_ends(query, key)
        on_screen = ~((np.maximum(starts[:, 1], ends[:, 1]) < clip_top) | (np.minimum(starts[:, 1], ends[:, 1])
                                                                             > clip_bottom))
        for head in chosen:
            color = head_color(head)
            for m in np.flatnonzero(on_screen & (heads == head)):
                weight = float(weights[head, query[m], key[m]])
                color.setAlphaF(min(1.0, weight))
                painter.setPen(QPen(color, 1.0 + 2.0 * weight))
                painter.drawLine(QPointF(*starts[m]), QPointF(*ends[m]))
        if self.hovered_line is not None and self.hovered_line[0] in chosen:
            head, i, j = self.hovered_line
            if i < weights.shape[1] and j < weights.shape[2]:
                start, end = self.line_ends(np.array([i]), np.array([j]))
                painter.setPen(QPen(theme.color("accent"), 3.0))
                painter.drawLine(QPointF(*start[0]), QPointF(*end[0]))
        painter.setFont(self.label_font())
        row = self.row_height()
        for side, box, token in self.label_boxes():
            if box.bottom() < clip_top or box.top() > clip_bottom:
                continue
            index = round((box.center().y() - TOP) / row - 0.5)
            highlighted = side == "query" and index == self.hovered_row
            painter.setPen(colors["highlighted"][0] if highlighted else colors["label"][0])
            painter.drawText(box, (Qt.AlignRight if side == "query" else Qt.AlignLeft) | Qt.AlignVCenter, token)

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        super().mouseMoveEvent(event)  # the hovered query row, as in Lines
        result = self.view.results.result
        if result is None:
            return
        line = self.line_at(event.position().x(), event.position().y())
        if line != self.hovered_line:
            self.hovered_line = line
            self.view.show_line(line)
            self.setToolTip(self.view.readout.text() if line is not None else "")
            self.update()

    def leaveEvent(self, event):  # noqa: N802 - Qt override
        self.hovered_line = None
        self.view.show_line(None)
        super().leaveEvent(event)


class MultiLinesView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.head_boxes: list[QCheckBox] = []
        self.legend = QWidget()
        self.legend_layout = QGridLayout(self.legend)
        self.legend_layout.setContentsMargins(2, 0, 2, 0)
        self.legend_layout.setVerticalSpacing(0)
        legend_area = QScrollArea()  # very many heads scroll; they never widen or lengthen the window
        legend_area.setWidget(self.legend)
        legend_area.setWidgetResizable(True)
        legend_area.setFrameShape(QFrame.NoFrame)
        legend_area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        legend_area.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.legend_area = legend_area
        self.canvas = MultiLinesCanvas(self)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.canvas)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.readout = QLabel(HINT)
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        top = QHBoxLayout()
        top.addWidget(QLabel("heads:"))
        top.addWidget(legend_area, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.readout)
        session_model.lines_heads_changed.connect(self.request_refresh)
        results.changed.connect(self.request_refresh)

    # --- which heads ------------------------------------------------------------------------------------
    def chosen_heads(self) -> list[int]:
        """The session's heads that this result has, in order; every head when none is chosen."""
        result = self.results.result
        heads = [head for head in sorted(self.session_model.session.lines_heads) if head < result.heads]
        return heads or list(range(result.heads))

    def head_weights(self) -> np.ndarray:
        """(chosen heads, n_q, n_k) weights of the shown layer."""
        return self.results.result.attentions()[self.results.layer][self.chosen_heads()]

    def _build_legend(self, heads: int) -> None:
        for box in self.head_boxes:
            self.legend_layout.removeWidget(box)
            box.deleteLater()
        self.head_boxes = []
        rows = math.ceil(heads / LEGEND_COLUMNS)
        columns = math.ceil(heads / rows)  # 12 heads: two rows of 6, not 8 + 4
        for head in range(heads):
            box = QCheckBox(f"H{head + 1}")
            swatch = QPixmap(12, 12)
            swatch.fill(head_color(head))
            box.setIcon(QIcon(swatch))
            box.setToolTip(f"Draw head {head + 1}'s lines in this colour")
            box.toggled.connect(self._on_box_toggled)
            self.legend_layout.addWidget(box, head // columns, head % columns)
            self.head_boxes.append(box)
        self.legend_layout.setColumnStretch(columns, 1)
        row_height = self.head_boxes[0].sizeHint().height() if self.head_boxes else 20
        self.legend_area.setFixedHeight(min(rows, 3) * row_height + 4)

    def _on_box_toggled(self, _checked: bool) -> None:
        ticked = tuple(head for head, box in enumerate(self.head_boxes) if box.isChecked())
        if not ticked:  # the last one stays: an empty view would say nothing
            self._sync_legend()
            return
        self.session_model.update(lines_heads=() if len(ticked) == len(self.head_boxes) else ticked)

    def _sync_legend(self) -> None:
        chosen = set(self.chosen_heads())
        for head, box in enumerate(self.head_boxes):
            box.blockSignals(True)
            box.setChecked(head in chosen)
            box.blockSignals(False)

    # --- drawing ----------------------------------------------------------------------------------------
    def title(self) -> str:
        result, layer = self.results.result, self.results.layer
        chosen = self.chosen_heads()
        which = "all heads" if len(chosen) == result.heads else "heads " + ", ".join(str(h + 1) for h in chosen)
        return f"layer {layer + 1}, {which}: queries → keys (one colour per head, line opacity = weight)"

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        if len(self.head_boxes) != result.heads:
            self._build_legend(result.heads)
        self._sync_legend()
        self.canvas.fit(self.scroll.viewport().height())
        self.canvas.update()

    def show_line(self, line: tuple[int, int, int] | None) -> None:
        """Say what the hovered line is, or how to use the view when none is."""
        if line is None:
            self.readout.setText(HINT)
            return
        result, layer = self.results.result, self.results.layer
        head, query, key = line
        weight = result.attentions()[layer, head, query, key]
        self.readout.setText(f"L{layer + 1}·H{head + 1}: {result.query_tokens[query]!r} (row {query}) → "
                             f"{result.key_tokens[key]!r} (col {key}): weight {weight:.4f}")

    def text_colors(self) -> dict[str, tuple[QColor, QColor]]:
        """(text colour, background) of each kind of text this view paints."""
        palette = self.canvas.palette()
        background = palette.color(self.canvas.backgroundRole())
        return {"label": (palette.color(self.canvas.foregroundRole()), background),
                "highlighted": (theme.color("accent"), background)}

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.canvas.fit(self.scroll.viewport().height())

    def _export_widget(self):
        return self.canvas
