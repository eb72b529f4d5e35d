"""Attention rollout across layers (Abnar & Zuidema, 2020) for the pretrained model."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from attnstudio.core.display import display_weights
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import MatrixPlot


class RolloutView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = MatrixPlot("rollout: how much each token draws on each input token",
                               axis_titles=("output token", "input token"))
        self.plot.enable_zoom()
        self.canvas.addItem(self.plot, row=0, col=0)
        self.canvas.addItem(self.plot.colorbar, row=0, col=1)
        self.plot.connect_scene()
        self.plot.cell_hovered.connect(lambda r, c, v: self.note.setText(self.plot.describe_cell(r, c)))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.canvas, 1)
        results.changed.connect(self.request_refresh)

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        if result.cross_attention:
            self.note.setText("Rollout follows self-attention through the layers; it is not defined for "
                              "cross-attention. Clear the second sentence to see it.")
            self.canvas.setVisible(False)
            return
        self.canvas.setVisible(True)
        rollout = result.rollout  # (n, n), computed by the worker
        shown = self.results.shown
        # the session's colour scale, as the heatmap and the flow view's rollout panel draw it (it was fitted to
        # the data, unlabelled, so "0–1" showed 0 to 0.23 here and 0 to 1 beside the flow)
        display = display_weights(rollout, None, result.query_tokens, result.key_tokens, shown.color_scale,
                                  shown.hide_special)
        self.plot.set_matrix(display.values, display.row_labels, display.col_labels, levels=display.levels,
                             hover_values=display.weights,
                             colorbar_title=display.colorbar_title.replace("weight", "share"))
        self.note.setText(f"Rollout over {result.num_layers} layer(s): head-averaged weights mixed 50/50 with the "
                          f"residual path, multiplied from the first layer up. Hover a cell for its value.")

    def _export_widget(self):
        return self.canvas
