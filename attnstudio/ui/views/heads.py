"""Every head of the selected layer side by side, with its entropy; and a layers x heads overview."""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import MatrixPlot
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

SELECTED_PEN = pg.mkPen((255, 140, 0), width=3)


class HeadsView(ResultView):
    def __init__(self, session: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.results = session, results
        self.grid = pg.GraphicsLayoutWidget()
        self.head_plots: list[pg.PlotItem] = []
        self.head_images: list[pg.ImageItem] = []
        self.overview_canvas = pg.GraphicsLayoutWidget()
        self.overview = MatrixPlot("mean attention entropy (nats) per layer and head · click to focus",
                                   colormap="magma", axis_titles=("layer", "head"))
        self.overview_canvas.addItem(self.overview, row=0, col=0)
        self.overview_canvas.addItem(self.overview.colorbar, row=0, col=1)
        self.overview.connect_scene()
        self.overview.cell_clicked.connect(lambda layer, head: self.session.update(layer=layer, head=head))
        self.overview.cell_hovered.connect(
            lambda layer, head, value: self.caption.setText(f"layer {layer + 1}, head {head + 1}: entropy {value:.3f}"))
        self.caption = QLabel("Click a head to focus it in the other views. Low entropy = sharp, focused head.")
        self.caption.setWordWrap(True)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(scroll_area(self.grid))  # many heads or a narrow window: scroll, never clip
        splitter.addWidget(self.overview_canvas)
        splitter.setSizes([500, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.caption)
        self.grid.scene().sigMouseClicked.connect(self._on_grid_clicked)
        session.changed.connect(self._on_session_changed)
        results.changed.connect(self.request_refresh)

    def _on_session_changed(self, name: str) -> None:
        if name in ("layer", "head"):
            self.request_refresh()

    def _build_grid(self, heads: int) -> None:
        self.grid.clear()
        self.head_plots, self.head_images = [], []
        columns = max(1, math.ceil(math.sqrt(heads)))
        for head in range(heads):
            plot = self.grid.addPlot(row=head // columns, col=head % columns)
            image = pg.ImageItem(axisOrder="row-major")
            image.setColorMap(pg.colormap.get("viridis"))
            plot.addItem(image)
            plot.invertY(True)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.getViewBox().setMouseEnabled(x=False, y=False)
            self.head_plots.append(plot)
            self.head_images.append(image)

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        layer, selected = self.results.clamp(self.session.layer, self.session.head)
        attentions = result.attentions()
        if len(self.head_plots) != result.heads:
            self._build_grid(result.heads)
        entropy = result.head_entropy()  # (layers, heads), computed by the worker
        for head, (plot, image) in enumerate(zip(self.head_plots, self.head_images)):
            weights = attentions[layer, head]
            image.setImage(weights, autoLevels=False, levels=(0.0, 1.0))
            image.setRect(0, 0, weights.shape[1], weights.shape[0])
            plot.setTitle(f"head {head + 1} · H={entropy[layer, head]:.2f}", size="9pt")
            plot.getViewBox().setBorder(SELECTED_PEN if head == selected else None)
            plot.getViewBox().autoRange(padding=0)
        fit_minimum(self.grid)
        self.overview.set_matrix(entropy, [str(i + 1) for i in range(entropy.shape[0])],
                                 [str(h + 1) for h in range(entropy.shape[1])])
        self.overview_canvas.setVisible(result.num_layers > 1)

    def _on_grid_clicked(self, event) -> None:
        for head, plot in enumerate(self.head_plots):
            if plot.sceneBoundingRect().contains(event.scenePos()):
                self.session.update(head=head)
                return


    def _export_widget(self):
        return self.grid
