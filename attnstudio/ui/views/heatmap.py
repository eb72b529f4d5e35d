"""The selected head's weights: tokens on both axes, hover read-out, a row's distribution, mask editing."""
from __future__ import annotations

import dataclasses

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from attnstudio.core.display import DisplayMatrix, display_weights
from attnstudio.engine import mask_caption
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import MatrixPlot, visible_ticks

HOVER_HINT = "Hover a cell to read its weight; click a row to see its distribution."


class HeatmapView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.selected_row = 0
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = MatrixPlot(axis_titles=("query", "key"))
        self.plot.enable_zoom()
        self.canvas.addItem(self.plot, row=0, col=0)
        self.canvas.addItem(self.plot.colorbar, row=0, col=1)
        self.canvas.addItem(self.plot.mask_legend, row=1, col=1)
        self.blocked_markers = pg.ScatterPlotItem(symbol="x", size=10, pen=pg.mkPen("r", width=2), brush=None)
        self.plot.addItem(self.blocked_markers)
        self.distribution = pg.PlotItem(title="")
        self.distribution.setMenuEnabled(False)
        self.distribution.hideButtons()
        self.distribution.setYRange(0, 1)
        self.distribution.getViewBox().setMouseEnabled(x=False, y=False)
        self.distribution.setLabel("left", "weight")
        self.distribution.getAxis("bottom").enableAutoSIPrefix(False)  # a token axis
        self.bars = pg.BarGraphItem(x=[0], height=[0], width=0.8, brush=pg.mkBrush(68, 119, 170))
        self.distribution.addItem(self.bars)
        self.canvas.addItem(self.distribution, row=1, col=0)
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 1)

        self.readout = QLabel(HOVER_HINT)
        self.readout.setWordWrap(True)  # a long token pair wraps instead of widening the window
        self.edit_mask = QCheckBox("Edit mask")
        self.edit_mask.setToolTip("When on, clicking a cell blocks (or unblocks) that query→key pair (M)")
        self.clear_cells = QPushButton("Clear cells")
        self.clear_cells.setToolTip("Remove every hand-blocked cell from the mask")
        self.clear_cells.clicked.connect(lambda: self.session_model.update(mask=self._mask_without_cells()))
        self.reset_zoom = QPushButton("Reset zoom")
        self.reset_zoom.setToolTip("Show the whole matrix again (or double-click it). "
                                   "The mouse wheel zooms, dragging pans.")
        self.reset_zoom.clicked.connect(self.plot.reset_zoom)
        bar = QHBoxLayout()
        bar.addWidget(self.readout, 1)
        bar.addWidget(self.reset_zoom)
        bar.addWidget(self.edit_mask)
        bar.addWidget(self.clear_cells)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(bar)

        self.plot.connect_scene()
        self.plot.cell_hovered.connect(self._on_cell_hovered)
        self.plot.hover_cleared.connect(lambda: self.readout.setText(HOVER_HINT))
        self.plot.cell_clicked.connect(self._on_cell_clicked)
        results.changed.connect(self.request_refresh)
        self.display: DisplayMatrix | None = None

    def _mask_without_cells(self):
        return dataclasses.replace(self.session_model.session.mask, blocked_cells=())

    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        self.display = display = display_weights(self.results.weights(), result.mask, result.query_tokens,
                                                 result.key_tokens, shown.color_scale, shown.hide_special)
        self.plot.set_matrix(display.values, display.row_labels, display.col_labels, levels=display.levels,
                             masked=display.masked, hover_values=display.weights,
                             colorbar_title=display.colorbar_title)
        # The colour bar's title names the scale; the plot title stays short enough not to squeeze the bar.
        hidden = " · special tokens hidden" if shown.hide_special else ""
        self.plot.setTitle(f"{result.model_name} · layer {shown.layer + 1}/{result.num_layers} · "
                           f"head {shown.head + 1}/{result.heads} · {mask_caption(result, shown.mask)}{hidden}")
        row_of = {int(r): i for i, r in enumerate(display.row_index)}
        col_of = {int(c): j for j, c in enumerate(display.col_index)}
        cells = [(col_of[c] + 0.5, row_of[r] + 0.5) for r, c in shown.mask.blocked_cells
                 if r in row_of and c in col_of]
        self.blocked_markers.setData(pos=cells) if cells else self.blocked_markers.clear()
        self.selected_row = min(self.selected_row, len(display.row_labels) - 1)
        self._show_distribution()

    def _show_distribution(self) -> None:
        display, row = self.display, self.selected_row
        values = display.weights[row]  # renormalised when special tokens are hidden
        self.bars.setOpts(x=np.arange(values.size), height=values, width=0.8)
        self.distribution.setTitle(f"where {display.row_labels[row]!r} (row {int(display.row_index[row])}) attends")
        self.distribution.setXRange(-0.5, values.size - 0.5, padding=0)
        width = max(self.distribution.getViewBox().width(), 200.0)
        ticks = visible_ticks(display.col_labels, 0, values.size - 1, width / max(values.size, 1) / 4)
        self.distribution.getAxis("bottom").setTicks([ticks])

    def _on_cell_hovered(self, row: int, col: int, value: float) -> None:
        shown = self.results.shown
        where = "" if shown is None else f"layer {shown.layer + 1}, head {shown.head + 1} · "
        self.readout.setText(f"{where}query {self.plot.describe_cell(row, col)}")
        self.plot.image.setToolTip(self.readout.text())

    def _on_cell_clicked(self, row: int, col: int) -> None:
        if self.display is None:
            return
        if self.edit_mask.isChecked():  # cells are the result's token positions, whatever is hidden
            cell = (int(self.display.row_index[row]), int(self.display.col_index[col]))
            self.session_model.update(mask=self.session_model.session.mask.with_cell_toggled(*cell))
            return
        self.selected_row = row
        # the cell "Why this score" explains and the head finder ranks, in the result's own positions
        self.session_model.update(cell=(int(self.display.row_index[row]), int(self.display.col_index[col])))
        self._show_distribution()

    def _export_widget(self):
        return self.canvas
