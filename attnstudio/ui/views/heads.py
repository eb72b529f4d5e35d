"""Every head of the selected layer side by side, with its entropy; and a layers x heads overview."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from attnstudio.core.display import describe_display, display_weights
from attnstudio.engine import mask_caption
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import MatrixPlot, masked_backdrop
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

SELECTED_PEN = pg.mkPen((255, 140, 0), width=3)
NO_PEN = pg.mkPen(None)
CAPTION_HINT = "Click a head to focus it in the other views. Low entropy = sharp, focused head."


def kv_label(result, head: int) -> str:
    """' · KV k' for a grouped-query model (consecutive query heads share a key/value head), else ''."""
    if not result.kv_heads:
        return ""
    return f" · KV {head // (result.heads // result.kv_heads) + 1}"


def kv_note(result) -> str:
    """A sentence saying how the query heads share key/value heads, for grouped-query models."""
    if not result.kv_heads:
        return ""
    return (f" {result.heads} query heads share {result.kv_heads} key/value heads, {result.heads // result.kv_heads} "
            f"each (KV n: the key/value head a head reads).")


class HeadsView(ResultView):
    def __init__(self, session: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.results = session, results
        self.grid = pg.GraphicsLayoutWidget()
        self.head_plots: list[pg.PlotItem] = []
        self.head_images: list[pg.ImageItem] = []
        self.masked_backdrops: list = []
        self.overview_canvas = pg.GraphicsLayoutWidget()
        self.overview = MatrixPlot("mean attention entropy (nats) per layer and head · click to focus",
                                   colormap="magma", axis_titles=("layer", "head"))
        self.overview_canvas.addItem(self.overview, row=0, col=0)
        self.overview_canvas.addItem(self.overview.colorbar, row=0, col=1)
        self.overview.connect_scene()
        self.overview.cell_clicked.connect(lambda layer, head: self.session.update(layer=layer, head=head))
        self.overview.cell_hovered.connect(
            lambda layer, head, value: self.caption.setText(f"layer {layer + 1}, head {head + 1}: entropy {value:.3f}"))
        self.caption = QLabel(CAPTION_HINT)
        self.caption.setWordWrap(True)  # a long caption wraps; it never widens the window
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(scroll_area(self.grid))  # many heads or a narrow window: scroll, never clip
        splitter.addWidget(self.overview_canvas)
        splitter.setSizes([500, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.caption)
        self.grid.scene().sigMouseClicked.connect(self._on_grid_clicked)
        results.changed.connect(self.request_refresh)

    def _build_grid(self, heads: int) -> None:
        self.grid.clear()
        self.head_plots, self.head_images, self.masked_backdrops = [], [], []
        columns = max(1, math.ceil(math.sqrt(heads)))
        for head in range(heads):
            plot = self.grid.addPlot(row=head // columns, col=head % columns)
            image = pg.ImageItem(axisOrder="row-major")
            image.setColorMap(pg.colormap.get("viridis"))
            plot.addItem(image)
            masked = masked_backdrop()  # masked cells are holes in the image over this grey
            plot.addItem(masked)
            plot.invertY(True)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.getViewBox().setMouseEnabled(x=False, y=False)
            self.head_plots.append(plot)
            self.head_images.append(image)
            self.masked_backdrops.append(masked)

    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        layer, selected = shown.layer, shown.head
        if len(self.head_plots) != result.heads:
            self._build_grid(result.heads)
        entropy = result.head_entropy()  # (layers, heads), computed by the worker
        for head, (plot, image, backdrop) in enumerate(zip(self.head_plots, self.head_images,
                                                                self.masked_backdrops)):
            display = display_weights(self.results.weights(head), result.mask, result.query_tokens,
                                      result.key_tokens, shown.color_scale, shown.hide_special)
            values = display.values
            if display.masked is not None:
                values = np.where(display.masked, np.nan, values)  # transparent: the grey backdrop shows
            image.setImage(values, autoLevels=False, levels=display.levels)
            image.setRect(0, 0, values.shape[1], values.shape[0])
            backdrop.setRect(0, 0, values.shape[1], values.shape[0])
            backdrop.setVisible(display.masked is not None)
            plot.setTitle(f"head {head + 1}{kv_label(result, head)} · H={entropy[layer, head]:.2f}", size="9pt")
            plot.getViewBox().setBorder(SELECTED_PEN if head == selected else NO_PEN)
            plot.getViewBox().update()  # the border is painted by the box: repaint so an old highlight goes
            plot.getViewBox().autoRange(padding=0)
        fit_minimum(self.grid)
        self.overview.set_matrix(entropy, [str(i + 1) for i in range(entropy.shape[0])],
                                 [str(h + 1) for h in range(entropy.shape[1])])
        self.overview_canvas.setVisible(result.num_layers > 1)
        masked_note = " Grey cells are masked." if result.mask is not None and not result.mask.all() else ""
        self.caption.setText(f"{result.model_name} · layer {layer + 1}/{result.num_layers} · head {selected + 1} "
                             f"selected · {mask_caption(result, shown.mask)} · "
                             f"{describe_display(shown.color_scale, shown.hide_special)}.{masked_note}"
                             f"{kv_note(result)} {CAPTION_HINT}")

    def _on_grid_clicked(self, event) -> None:
        for head, plot in enumerate(self.head_plots):
            if plot.sceneBoundingRect().contains(event.scenePos()):
                self.session.update(head=head)
                return


    def _export_widget(self):
        return self.grid
