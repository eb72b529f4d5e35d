"""T5's relative position bias of one head as its own (n, n) panel: what the model adds to every score
before the softmax, in every layer, depending only on the distance between query and key."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import SIGNED_COLORMAP, MatrixPlot

HOVER_HINT = "Hover a cell to read the bias the head adds to that query → key score."
NO_BIAS = {  # why there is no panel, by what the result is
    "cross": "Cross-attention adds no position bias in T5 (the source's positions reach the decoder only through "
             "the encoder's output). Choose encoder or decoder self-attention to see the bias.",
    None: "{model} has no relative position bias: only encoder-decoder models of the T5 family add one to their "
          "scores.",
}


class PositionBiasView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = MatrixPlot(colormap=SIGNED_COLORMAP, axis_titles=("query", "key"))
        self.plot.enable_zoom()
        self.canvas.addItem(self.plot, row=0, col=0)
        self.canvas.addItem(self.plot.colorbar, row=0, col=1)
        self.canvas.addItem(self.plot.mask_legend, row=1, col=1)
        self.readout = QLabel(HOVER_HINT)
        self.readout.setWordWrap(True)
        self.readout.setTextFormat(Qt.PlainText)  # tokens such as <pad> are text, not markup
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.readout)
        self.plot.connect_scene()
        self.plot.cell_hovered.connect(self._on_cell_hovered)
        self.plot.hover_cleared.connect(lambda: self.readout.setText(HOVER_HINT))
        results.changed.connect(self.request_refresh)

    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        bias = result.position_bias
        if bias is None:
            reason = NO_BIAS["cross" if result.attention_kind == "cross" else None]
            self.note.setText(reason.format(model=result.plain_model_name or result.model_name))
            self.canvas.setVisible(False)
            self.readout.setVisible(False)
            return
        self.canvas.setVisible(True)
        self.readout.setVisible(True)
        matrix = bias[shown.head]  # (n, n)
        masked = None if result.mask is None else ~result.mask  # the decoder's future keys: never attended
        self.plot.set_axis_titles(*result.axis_titles)
        self.plot.set_matrix(matrix, result.query_tokens, result.key_tokens, symmetric=True, masked=masked,
                             colorbar_title="bias added to the score")
        direction = "causal: past only" if result.attention_kind == "decoder" else "both directions"
        self.plot.setTitle(f"{result.model_name} · position bias · head {shown.head + 1}/{result.heads} · "
                           f"all {result.num_layers} layers · {direction}")
        self.note.setText(f"T5's relative position bias: head {shown.head + 1} adds it to its scores in every layer. "
                          "It depends only on the distance key − query, bucketed (exact up to a few tokens, then "
                          "logarithmic): the same value along each diagonal.")

    def _on_cell_hovered(self, row: int, col: int, value: float) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None or result.position_bias is None:
            return
        self.readout.setText(f"head {shown.head + 1} · query {self.plot.describe_cell(row, col)} "
                             f"(distance {col - row:+d})")

    def _export_widget(self):
        return self.canvas
