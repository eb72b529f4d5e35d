"""The BertViz-style view: query tokens on the left, key tokens on the right, lines weighted by attention.

Rows never shrink below a readable height: a long input scrolls instead, and labels are thinned so no
two ever overlap.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView

MIN_WEIGHT = 0.02  # thinner lines are invisible anyway; skipping them keeps 512 tokens fast
ROW_HEIGHT = 18.0  # rows shrink from this to fit the window ...
MIN_ROW_HEIGHT = 12.0  # ... but not below this: then the view scrolls
TOP, BOTTOM = 28.0, 8.0
LABEL_WIDTH = 200.0


class LinesCanvas(QWidget):
    """Paints the lines; as tall as its rows need (the scroll area around it shows a part)."""

    def __init__(self, view: LinesView):
        super().__init__()
        self.view = view
        self.hovered_row: int | None = None
        self.setMouseTracking(True)
        self.setAutoFillBackground(True)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setToolTip("Hover a token on the left to see only its attention")

    # --- geometry -------------------------------------------------------------------------------------
    def rows(self) -> int:
        result = self.view.results.result
        return 0 if result is None else max(len(result.query_tokens), len(result.key_tokens))

    def fit(self, available_height: int) -> None:
        """Fill ``available_height`` when the rows fit at MIN_ROW_HEIGHT; otherwise grow and let it scroll."""
        needed = math.ceil(TOP + BOTTOM + self.rows() * MIN_ROW_HEIGHT)
        self.setMinimumHeight(needed if needed > available_height else 0)

    def row_height(self) -> float:
        return max(MIN_ROW_HEIGHT, min(ROW_HEIGHT, (self.height() - TOP - BOTTOM) / max(self.rows(), 1)))

    def label_font(self) -> QFont:
        font = QFont(self.font())
        font.setPixelSize(max(9, min(13, int(self.row_height() * 0.75))))
        return font

    def label_step(self) -> int:
        """Every k-th token is labelled, k chosen so the labels' boxes never overlap."""
        return max(1, math.ceil(QFontMetricsF(self.label_font()).height() / self.row_height()))

    def columns(self) -> tuple[float, float]:
        return self.width() * 0.3, self.width() * 0.7

    def label_boxes(self) -> list[tuple[str, QRectF, str]]:
        """(side, box, token) of every label drawn, in widget coordinates: a box is one line of text high,
        centred on its row, and boxes are at least that far apart."""
        result = self.view.results.result
        if result is None:
            return []
        row, step = self.row_height(), self.label_step()
        text_height = QFontMetricsF(self.label_font()).height()
        left_x, right_x = self.columns()
        boxes = []
        for side, tokens, x in (("query", result.query_tokens, left_x - 6 - LABEL_WIDTH),
                                ("key", result.key_tokens, right_x + 6)):
            for index in range(0, len(tokens), step):
                centre = TOP + (index + 0.5) * row
                boxes.append((side, QRectF(x, centre - text_height / 2, LABEL_WIDTH, text_height), tokens[index]))
        return boxes

    # --- drawing --------------------------------------------------------------------------------------
    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        colors = self.view.text_colors()
        text_color = colors["label"][0]
        result = self.view.results.result
        if result is None:
            return
        layer, head = self.view.results.layer, self.view.results.head
        weights = self.view.results.weights()
        n_q = weights.shape[0]
        row = self.row_height()
        left_x, right_x = self.columns()
        painter.setPen(text_color)
        painter.drawText(QRectF(0, 4, self.width(), 20), Qt.AlignCenter,
                         f"layer {layer + 1}, head {head + 1}: queries → keys (line opacity = weight)")
        clip_top, clip_bottom = event.rect().top(), event.rect().bottom()
        if self.hovered_row is not None and self.hovered_row >= n_q:  # a shorter text arrived under the mouse
            self.hovered_row = None
        rows = range(n_q) if self.hovered_row is None else [self.hovered_row]
        color = theme.color("lines")
        for i in rows:
            y_query = TOP + (i + 0.5) * row
            for j in np.flatnonzero(weights[i] >= MIN_WEIGHT):
                y_key = TOP + (j + 0.5) * row
                if max(y_query, y_key) < clip_top or min(y_query, y_key) > clip_bottom:
                    continue  # a scrolled-away line: skipping it keeps 512 tokens fast
                color.setAlphaF(float(min(1.0, weights[i, j])))
                painter.setPen(QPen(color, 1.0 + 3.0 * float(weights[i, j])))
                painter.drawLine(QPointF(left_x + 4, y_query), QPointF(right_x - 4, y_key))
        painter.setFont(self.label_font())
        for side, box, token in self.label_boxes():
            if box.bottom() < clip_top or box.top() > clip_bottom:
                continue
            index = round((box.center().y() - TOP) / row - 0.5)
            highlighted = side == "query" and index == self.hovered_row
            painter.setPen(colors["highlighted"][0] if highlighted else text_color)
            align = Qt.AlignRight if side == "query" else Qt.AlignLeft
            painter.drawText(box, align | Qt.AlignVCenter, token)

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        result = self.view.results.result
        if result is None:
            return
        row = self.row_height()
        left_x, _ = self.columns()
        index = int((event.position().y() - TOP) // row)
        new = index if event.position().x() < left_x + 20 and 0 <= index < len(result.query_tokens) else None
        if new != self.hovered_row:
            self.hovered_row = new
            self.update()

    def leaveEvent(self, event):  # noqa: N802 - Qt override
        self.hovered_row = None
        self.update()


class LinesView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.canvas = LinesCanvas(self)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.canvas)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)
        results.changed.connect(self.request_refresh)

    @property
    def hovered_row(self) -> int | None:
        return self.canvas.hovered_row

    def text_colors(self) -> dict[str, tuple[QColor, QColor]]:
        """(text colour, background) of each kind of text this view paints."""
        palette = self.canvas.palette()
        background = palette.color(self.canvas.backgroundRole())
        return {"label": (palette.color(self.canvas.foregroundRole()), background),
                "highlighted": (theme.color("accent"), background)}

    def refresh(self) -> None:
        self.canvas.fit(self.scroll.viewport().height())
        self.canvas.update()

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.canvas.fit(self.scroll.viewport().height())

    def _export_widget(self):
        return self.canvas
