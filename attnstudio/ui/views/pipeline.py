"""softmax(QK^T * scale) V step by step for the selected head: each step a labelled heatmap that says what it
is; hovering any panel follows one (query, key) pair through every step with its numbers."""
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
from attnstudio.ui.views.matrix import SIGNED_COLORMAP
from attnstudio.ui.views.pipeline_panels import PairNumbers, PipelinePanel, pair_numbers
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT = 260, 280  # a panel's axes, title and a readable matrix
HINT = "Hover any cell: the same query → key pair is marked in every panel, with its numbers."
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
        self.plots: dict[str, PipelinePanel] = {}
        self.pair = session_model.session.cell  # the (query, key) pair followed through the panels (hover moves it)
        self.numbers: PairNumbers | None = None
        for key, title, colormap, _ in STEPS:
            plot = PipelinePanel(key, title, colormap)
            plot.setMinimumSize(PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT)
            plot.enable_zoom()
            self.plots[key] = plot
        self.columns = 0
        # A narrow window gets fewer columns and a vertical scroll bar, never panels cut off at the edge.
        self.scroll = scroll_area(self.canvas)
        self.readout = QLabel(HINT)
        self.readout.setWordWrap(True)  # the whole chain of numbers, on two lines where the tab is narrow
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long tokens never widen the view
        self._reflow()
        for plot in self.plots.values():
            plot.connect_scene()
            plot.cell_hovered.connect(lambda r, c, v, p=plot: self._on_cell_hovered(p, r, c))
            plot.hover_cleared.connect(self._show_pair)
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
        arrays["weights"] = result.head_weights(layer, head)
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
        arrays = self.arrays = self.steps()
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
            if key == "scores":  # T5's self-attention scores hold its relative position bias
                self.plots[key].setTitle("4 · (Q Kᵀ + B) · scale" if result.position_bias is not None else title,
                                         size="9pt")
        self.plots["mask"].image.setColorMap(theme.mask_colormap())
        scale = score_scale(shown.score, result.d_k, None) / shown.temperature
        score_text = SCORES[shown.score].formula.format(d_k=result.d_k)
        if result.attention_kind is not None:  # T5 folds 1/sqrt(d_k) into its weights; self-attention adds a bias
            scale = 1.0 / shown.temperature
            score_text = ("(Q Kᵀ + B), B = the relative position bias" if result.position_bias is not None
                          else "Q Kᵀ (T5: no 1/√d_k, no position bias)")
        self.formula.setText(
            f"<b>{result.model_name}</b>, layer {layer + 1}, head {head + 1}: "
            f"output = softmax(mask({score_text} · {1 / shown.temperature:g})) V  — "
            f"effective scale {scale:.4g}, temperature {shown.temperature:g}, d_k = {result.d_k}, "
            f"mask: {mask_caption(result, shown.mask)}")
        self._show_pair()

    def _on_cell_hovered(self, plot: PipelinePanel, row: int, col: int) -> None:
        if self.results.result is None:
            return
        self.pair = plot.pair_for(row, col, self.pair)
        self._show_pair()
        if self.numbers is not None and plot.key not in ("scores", "mask", "masked", "weights"):
            self.readout.setText(f"{self.readout.text()} · {plot.full_title}: {plot.describe_cell(row, col)}")

    def _show_pair(self) -> None:
        """Every panel's numbers and marker for the followed pair; the read-out gives the whole chain."""
        result, shown = self.results.result, self.results.shown
        n_q, n_k = len(result.query_tokens), len(result.key_tokens)
        if self.pair[0] >= n_q or self.pair[1] >= n_k:  # a shorter text arrived: follow nothing until hovered
            self.numbers = None
            for plot in self.plots.values():
                plot.set_value("")
                plot.mark(None)
            self.readout.setText(HINT)
            return
        self.numbers = pair_numbers(result, shown, self.arrays, *self.pair)
        for key, text in self.numbers.panel_values().items():
            self.plots[key].set_value(text)
            self.plots[key].mark(self.numbers)
        self.readout.setText(f"layer {shown.layer + 1}, head {shown.head + 1} · {self.numbers.chain()}")

    def _export_widget(self):
        return self.canvas
