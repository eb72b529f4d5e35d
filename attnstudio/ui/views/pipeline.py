"""softmax(QK^T * scale) V step by step for the selected head: each step a labelled heatmap."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from attnstudio.core.kernels import score_scale
from attnstudio.core.scores import SCORES
from attnstudio.engine import mask_caption
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import SIGNED_COLORMAP, MatrixPlot
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT = 260, 240  # a panel's axes, title and a readable matrix
STEPS = [  # (key, title, colormap, symmetric)
    ("queries", "1 · Q = X W_Q", SIGNED_COLORMAP, True),
    ("keys", "2 · K = X W_K", SIGNED_COLORMAP, True),
    ("values", "3 · V = X W_V", SIGNED_COLORMAP, True),
    ("scores", "4 · Q Kᵀ · scale", SIGNED_COLORMAP, True),
    ("mask", "5 · mask (light = allowed, dark = blocked)", "CET-L1", False),  # colours follow the theme
    ("masked", "6 · masked (blank = −∞)", SIGNED_COLORMAP, True),
    ("weights", "7 · softmax → weights", "viridis", False),
    ("context", "8 · output = weights · V", SIGNED_COLORMAP, True),
]


class PipelineView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.formula = QLabel()
        self.formula.setWordWrap(True)
        self.canvas = pg.GraphicsLayoutWidget()
        self.plots: dict[str, MatrixPlot] = {}
        for key, title, colormap, _ in STEPS:
            plot = MatrixPlot(colormap=colormap, colorbar=False)
            plot.setTitle(title, size="9pt")
            plot.setMinimumSize(PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT)
            plot.enable_zoom()
            self.plots[key] = plot
        self.columns = 0
        # A narrow window gets fewer columns and a vertical scroll bar, never panels cut off at the edge.
        self.scroll = scroll_area(self.canvas)
        self.readout = QLabel("Hover any cell to read its value.")
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long tokens never widen the view
        self._reflow()
        for plot in self.plots.values():
            plot.connect_scene()
            plot.cell_hovered.connect(lambda r, c, v, p=plot: self._on_cell_hovered(p, r, c))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.formula)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.readout)
        results.changed.connect(self.request_refresh)

    def _reflow(self) -> None:
        """As many columns (up to 4) as fit the width; the canvas is never smaller than its panels need."""
        width = self.scroll.width() - self.scroll.verticalScrollBar().sizeHint().width() - 2 * self.scroll.frameWidth()
        columns = max(1, min(len(STEPS) // 2, width // PANEL_MIN_WIDTH))
        if columns == 3:
            columns = 2  # 3 + 3 + 2 panels leave a hole; two columns read in pipeline order
        if columns != self.columns:
            self.columns = columns
            for plot in self.plots.values():
                if plot.scene() is not None:
                    self.canvas.removeItem(plot)
            for index, plot in enumerate(self.plots.values()):
                self.canvas.addItem(plot, row=index // columns, col=index % columns)
        fit_minimum(self.canvas)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._reflow()

    def steps(self) -> dict[str, np.ndarray]:
        """Every step's matrix for the selected layer and head, on the host."""
        result, layer, head = self.results.result, self.results.layer, self.results.head
        arrays = {name: result.step(layer, name)[head] for name in ("queries", "keys", "values", "scores", "context")}
        arrays["weights"] = result.attentions()[layer, head]
        mask = result.mask if result.mask is not None else np.ones(arrays["scores"].shape, dtype=bool)
        arrays["mask"] = mask.astype(np.float32)
        arrays["masked"] = np.where(mask, arrays["scores"], -np.inf).astype(np.float32)
        return arrays

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        shown = self.results.shown
        layer, head = shown.layer, shown.head
        arrays = self.steps()
        dims = [f"d{i}" for i in range(arrays["queries"].shape[1])]
        labels = {"queries": (result.query_tokens, dims), "keys": (result.key_tokens, dims),
                  "values": (result.key_tokens, dims), "context": (result.query_tokens, dims)}
        masked = None if result.mask is None else ~result.mask  # weights: masked cells grey, not "near zero"
        for key, title, _, symmetric in STEPS:
            rows, cols = labels.get(key, (result.query_tokens, result.key_tokens))
            levels = (0.0, 1.0) if key in ("weights", "mask") else None
            self.plots[key].set_matrix(arrays[key], rows, cols, levels=levels, symmetric=symmetric,
                                       masked=masked if key == "weights" else None)
            if key == "weights":
                self.plots[key].setTitle(title + (" (grey = masked)" if masked is not None and masked.any() else ""),
                                         size="9pt")
        self.plots["mask"].image.setColorMap(theme.mask_colormap())
        scale = score_scale(shown.score, result.d_k, None) / shown.temperature
        score_text = SCORES[shown.score].formula.format(d_k=result.d_k)
        self.formula.setText(
            f"<b>{result.model_name}</b>, layer {layer + 1}, head {head + 1}: "
            f"output = softmax(mask({score_text} · {1 / shown.temperature:g})) V  — "
            f"effective scale {scale:.4g}, temperature {shown.temperature:g}, d_k = {result.d_k}, "
            f"mask: {mask_caption(result, shown.mask)}")

    def _on_cell_hovered(self, plot: MatrixPlot, row: int, col: int) -> None:
        shown = self.results.shown
        where = "" if shown is None else f"layer {shown.layer + 1}, head {shown.head + 1} · "
        self.readout.setText(f"{where}{plot.titleLabel.text} · {plot.describe_cell(row, col)}")

    def _export_widget(self):
        return self.canvas
