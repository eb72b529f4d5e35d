"""The BertViz-style view: query tokens on the left, key tokens on the right, lines weighted by attention."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView

MIN_WEIGHT = 0.02  # thinner lines are invisible anyway; skipping them keeps 512 tokens fast
ROW_HEIGHT = 18.0


class LinesView(ResultView):
    def __init__(self, session: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.results = session, results
        self.hovered_row: int | None = None
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setToolTip("Hover a token on the left to see only its attention")
        results.changed.connect(self.request_refresh)

    def _geometry(self, n_q: int, n_k: int):
        top = 28.0
        row = min(ROW_HEIGHT, (self.height() - top - 8) / max(n_q, n_k, 1))
        left_x, right_x = self.width() * 0.3, self.width() * 0.7
        return top, max(row, 1.0), left_x, right_x

    def refresh(self) -> None:
        self.update()

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        text_color = self.palette().windowText().color()
        result = self.results.result
        if result is None:
            painter.setPen(text_color)
            painter.drawText(self.rect(), Qt.AlignCenter, "Computing…")
            return
        layer, head = self.results.layer, self.results.head
        weights = self.results.weights()
        n_q, n_k = weights.shape
        top, row, left_x, right_x = self._geometry(n_q, n_k)
        painter.setPen(text_color)
        painter.drawText(QRectF(0, 4, self.width(), 20), Qt.AlignCenter,
                         f"layer {layer + 1}, head {head + 1}: queries → keys (line opacity = weight)")
        if self.hovered_row is not None and self.hovered_row >= n_q:  # a shorter text arrived under the mouse
            self.hovered_row = None
        rows = range(n_q) if self.hovered_row is None else [self.hovered_row]
        color = QColor(68, 119, 170)
        for i in rows:
            for j in np.flatnonzero(weights[i] >= MIN_WEIGHT):
                color.setAlphaF(float(min(1.0, weights[i, j])))
                painter.setPen(QPen(color, 1.0 + 3.0 * float(weights[i, j])))
                painter.drawLine(QPointF(left_x + 4, top + (i + 0.5) * row), QPointF(right_x - 4, top + (j + 0.5) * row))
        font = painter.font()
        font.setPixelSize(max(6, min(13, int(row * 0.8))))
        painter.setFont(font)
        label_step = max(1, int(np.ceil(9 / row)))
        for tokens, x, align in ((result.query_tokens, left_x - 6, Qt.AlignRight), (result.key_tokens, right_x + 6,
                                                                                    Qt.AlignLeft)):
            for index in range(0, len(tokens), label_step):
                highlighted = tokens is result.query_tokens and index == self.hovered_row
                painter.setPen(QColor(255, 140, 0) if highlighted else text_color)
                box = QRectF(x - 200 if align == Qt.AlignRight else x, top + index * row, 200, row)
                painter.drawText(box, align | Qt.AlignVCenter, tokens[index])

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        result = self.results.result
        if result is None:
            return
        n_q, n_k = len(result.query_tokens), len(result.key_tokens)
        top, row, left_x, _ = self._geometry(n_q, n_k)
        index = int((event.position().y() - top) // row)
        new = index if event.position().x() < left_x + 20 and 0 <= index < n_q else None
        if new != self.hovered_row:
            self.hovered_row = new
            self.update()

    def leaveEvent(self, event):  # noqa: N802 - Qt override
        self.hovered_row = None
        self.update()

    def _export_widget(self):
        return self
