"""A labelled matrix heatmap: one reused ImageItem, a colour bar, token ticks that thin out, hover read-out.

Follows pyqtgraph's MatrixDisplayExample: row-major images, levels fixed by the
caller, labels through ``getAxis(...).setTicks``.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from attnstudio.core.display import MASKED_RGBA

WEIGHTS_COLORMAP = "viridis"
SIGNED_COLORMAP = "CET-D1"
MIN_LABEL_SPACING_PX = 13
EDGE_LABEL_MARGIN_PX = 10


def visible_ticks(labels: list[str], first: float, last: float, pixels_per_item: float,
                  spacing: float = MIN_LABEL_SPACING_PX) -> list[tuple[int, str]]:
    """Every k-th label with index in [first, last], k chosen so shown labels are ``spacing`` pixels apart."""
    if not labels:
        return []
    start, stop = max(0, int(math.floor(first))), min(len(labels) - 1, int(math.ceil(last)))
    step = max(1, math.ceil(spacing / max(pixels_per_item, 1e-3)))
    return [(i, _short(labels[i])) for i in range(start - start % step, stop + 1, step) if i >= start]


def _short(label: str, limit: int = 14) -> str:
    label = label.replace("\n", " ").replace("\t", " ")
    return label if len(label) <= limit else label[: limit - 1] + "…"


def masked_backdrop() -> QGraphicsRectItem:
    """A neutral grey rectangle behind a matrix image whose masked cells are NaN (transparent).

    One image with holes rather than a second image on top: the grey lines up with the cells exactly,
    on screen and in every export format.
    """
    backdrop = QGraphicsRectItem()
    backdrop.setPen(QPen(Qt.NoPen))
    backdrop.setBrush(QColor(*MASKED_RGBA))
    backdrop.setZValue(-1)
    backdrop.setVisible(False)
    return backdrop


class VerticalTokenAxis(pg.AxisItem):
    """A top axis whose labels stand vertically, so every token fits however short its column."""

    def __init__(self):
        super().__init__("top")
        self._labels: list[tuple[float, str]] = []
        self.setStyle(hideOverlappingLabels=EDGE_LABEL_MARGIN_PX)  # room for half a label past each end

    def set_labels(self, labels: list[tuple[float, str]]) -> None:
        self._labels = labels
        metrics = QFontMetrics(self.font())
        longest = max((metrics.horizontalAdvance(text) for _, text in labels), default=10)
        self.setHeight(min(longest, 120) + 12 + self._title_height())
        self.setTicks([[(value, "") for value, _ in labels]])

    def _title_height(self) -> float:
        """The room the axis title ("key") takes above the labels, so the two never overlap."""
        return self.label.boundingRect().height() if self.label.isVisible() else 0.0

    def drawPicture(self, painter, axis_spec, tick_specs, text_specs):  # noqa: N802 - Qt override
        super().drawPicture(painter, axis_spec, tick_specs, [])
        if not self._labels or self.range[1] == self.range[0]:
            return
        bounds = self.mapRectFromParent(self.geometry())
        length = max(bounds.height() - 7 - self._title_height(), 0.0)
        scale = bounds.width() / (self.range[1] - self.range[0])
        painter.setPen(self.textPen())
        painter.setFont(self.font())
        for value, text in self._labels:
            if not self.range[0] <= value <= self.range[1]:
                continue
            x = bounds.left() + (value - self.range[0]) * scale
            painter.save()
            painter.translate(x, bounds.bottom() - 7)
            painter.rotate(-90)
            painter.drawText(QRectF(0, -8, length, 16), Qt.AlignLeft | Qt.AlignVCenter,
                             painter.fontMetrics().elidedText(text, Qt.ElideRight, int(length)))
            painter.restore()


class MatrixPlot(pg.PlotItem):
    """One matrix, rows top to bottom; emits the cell under the mouse and the cell clicked."""

    cell_hovered = Signal(int, int, float)  # also re-sent when new data arrives under a resting mouse
    hover_cleared = Signal()  # the cell under the mouse no longer exists (new data of another shape)
    cell_clicked = Signal(int, int)

    def __init__(self, title: str = "", *, colormap: str = WEIGHTS_COLORMAP, colorbar: bool = True,
                 axis_titles: tuple[str, str] = ("", "")):
        super().__init__(title=title, axisItems={"top": VerticalTokenAxis()})
        self._let_title_narrow()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image)
        self.invertY(True)
        self.setAspectLocked(False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self.showAxis("top")
        self.hideAxis("bottom")
        self.getViewBox().setMouseEnabled(x=False, y=False)
        for side in ("left", "top"):  # token axes: never "key (x0.001)"
            self.getAxis(side).enableAutoSIPrefix(False)
        self.zoomable = False
        self.row_labels: list[str] = []
        self.col_labels: list[str] = []
        self.matrix = np.zeros((1, 1), dtype=np.float32)
        self.hover_values = self.matrix  # what the hover read-out reports (the weights, not their colour scale)
        self.masked: np.ndarray | None = None  # (rows, cols) bool, True = forbidden by the mask
        self.hovered: tuple[int, int] | None = None
        self.colormap = pg.colormap.get(colormap)
        self.image.setColorMap(self.colormap)
        # Masked cells: holes in the image over a neutral grey backdrop, so they never pass for near-zero attention.
        self.masked_backdrop = masked_backdrop()
        self.addItem(self.masked_backdrop)
        self.mask_legend = pg.LabelItem("", justify="left")  # the view places it (next to the colour bar)
        legend_width = QFontMetrics(self.mask_legend.item.font()).horizontalAdvance("■ masked") + 16
        self.mask_legend.setMinimumWidth(legend_width)  # fixed: the text comes and goes with the mask
        self.mask_legend.setMaximumWidth(legend_width)
        self.colorbar = None
        if colorbar:
            self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.colormap, interactive=False, width=12)
            self.colorbar.setImageItem(self.image)
        left, top = axis_titles
        if left:
            self.setLabel("left", left)
        if top:
            self.setLabel("top", top)
        self.getViewBox().sigRangeChanged.connect(self._update_ticks)
        self.getViewBox().sigResized.connect(self._update_ticks)
        self.scene_connected = False

    def set_axis_titles(self, rows: str, columns: str) -> None:
        """Name what the rows (left) and the columns (top) hold, e.g. "query (target)" and "key (source)"."""
        for side, text in (("left", rows), ("top", columns)):
            if self.getAxis(side).labelText != text:
                self.setLabel(side, text)

    def set_matrix(self, matrix: np.ndarray, row_labels: list[str] | None = None,
                   col_labels: list[str] | None = None, *, levels: tuple[float, float] | None = None,
                   symmetric: bool = False, masked: np.ndarray | None = None,
                   hover_values: np.ndarray | None = None, colorbar_title: str | None = None) -> None:
        """Show ``matrix`` (rows, cols). levels None: fit the data (symmetric about 0 if asked).

        masked (rows, cols) bool: cells the mask forbids, drawn in MASKED_RGBA grey with a legend entry.
        hover_values (rows, cols): what the hover read-out reports (default: ``matrix``).
        """
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.size == 0:
            matrix = np.zeros((1, 1), dtype=np.float32)
        finite = matrix[np.isfinite(matrix)]
        if levels is None:
            if finite.size == 0:
                levels = (0.0, 1.0)
            elif symmetric:
                bound = float(np.abs(finite).max()) or 1.0
                levels = (-bound, bound)
            else:
                low, high = float(finite.min()), float(finite.max())
                levels = (low, high if high > low else low + 1.0)
        shape_changed = matrix.shape != self.matrix.shape
        self.matrix = matrix
        self.hover_values = matrix if hover_values is None or hover_values.shape != matrix.shape else hover_values
        display = np.where(np.isfinite(matrix), matrix, np.nan)  # -inf (masked) scores draw blank
        masked = masked if masked is not None and masked.shape == matrix.shape and masked.any() else None
        if masked is not None:
            display[masked] = np.nan  # transparent: the grey backdrop shows through
        self.image.setImage(display, autoLevels=False, levels=levels)
        self.image.setRect(0, 0, matrix.shape[1], matrix.shape[0])
        self._set_masked(masked)
        if self.colorbar is not None:
            self.colorbar.setLevels(levels)
            if colorbar_title is not None:
                self.colorbar.getAxis("left").setLabel(colorbar_title)
        self.row_labels = list(row_labels) if row_labels is not None else [str(i) for i in range(matrix.shape[0])]
        self.col_labels = list(col_labels) if col_labels is not None else [str(j) for j in range(matrix.shape[1])]
        if shape_changed:
            self.getViewBox().setRange(xRange=(0, matrix.shape[1]), yRange=(0, matrix.shape[0]), padding=0)
        self._update_ticks()
        self._rehover()

    def _set_masked(self, masked: np.ndarray | None) -> None:
        self.masked = masked
        self.masked_backdrop.setVisible(masked is not None)
        if masked is None:
            self.mask_legend.setText("")
            return
        self.masked_backdrop.setRect(0, 0, masked.shape[1], masked.shape[0])
        grey = "#{:02x}{:02x}{:02x}".format(*MASKED_RGBA[:3])
        self.mask_legend.setText(f"<span style='color:{grey}'>■</span> masked")

    def _rehover(self) -> None:
        """New data under a resting mouse: say what the cell under it holds now (or that it is gone)."""
        if self.hovered is None:
            return
        row, col = self.hovered
        if row < self.matrix.shape[0] and col < self.matrix.shape[1]:
            self.cell_hovered.emit(row, col, float(self.hover_values[row, col]))
        else:
            self.hovered = None
            self.hover_cleared.emit()

    # --- titles elide to the panel's width (a long title must not widen the window) ----------------------
    def setTitle(self, title=None, **args):  # noqa: N802 - pyqtgraph override
        self.full_title = title
        super().setTitle(title, **args)
        self._fit_title()

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_title()

    def _let_title_narrow(self) -> None:
        """The title never holds its panel wider than the layout gives it (it elides instead).

        pyqtgraph's LabelItem sets its minimum width to its text's width again whenever it is resized, which
        made a panel's own layout wider than the panel: beside a second panel and a colour bar (the flow view
        at 1024x700) the colour bar was drawn over the last column and its label over the matrix.
        """
        label = self.titleLabel
        measure = label.updateMin

        def update_min() -> None:
            measure()
            label.setMinimumWidth(0)
            label._sizeHint[Qt.SizeHint.MinimumSize] = (0, label._sizeHint[Qt.SizeHint.MinimumSize][1])

        label.updateMin = update_min

    def _fit_title(self) -> None:
        title, label = getattr(self, "full_title", None), self.titleLabel
        if not title:
            return
        available = max(self.width() - 12, 40.0)
        shown = title
        if label.text != title:
            label.setText(title)
        if label.itemRect().width() > available:  # the longest prefix that fits, with an ellipsis
            low, high = 0, len(title)
            while low < high:
                middle = (low + high + 1) // 2
                label.setText(title[:middle].rstrip() + "…")
                low, high = (middle, high) if label.itemRect().width() <= available else (low, middle - 1)
            shown = title[:low].rstrip() + "…"
            label.setText(shown)
        label.setToolTip(title if shown != title else "")
        label.setMinimumWidth(0)  # the layout may narrow the title with its panel
        label._sizeHint[Qt.SizeHint.MinimumSize] = (0, label._sizeHint[Qt.SizeHint.MinimumSize][1])
        label.updateGeometry()

    # --- zoom and pan (wheel zooms about the mouse, drag pans, double-click shows everything) -----------
    def enable_zoom(self) -> None:
        """Let the mouse zoom and pan this matrix, never past its edges; the token ticks re-thin as it zooms."""
        self.zoomable = True
        self.getViewBox().setMouseEnabled(x=True, y=True)
        self.image.sigImageChanged.connect(self._limit_to_matrix)
        self._limit_to_matrix()

    def _limit_to_matrix(self) -> None:
        rows, cols = self.matrix.shape
        self.getViewBox().setLimits(xMin=0, xMax=cols, yMin=0, yMax=rows,
                                    minXRange=min(2, cols), minYRange=min(2, rows))

    def reset_zoom(self) -> None:
        """Show the whole matrix again."""
        rows, cols = self.matrix.shape
        self.getViewBox().setRange(xRange=(0, cols), yRange=(0, rows), padding=0)

    def visible_cells(self) -> tuple[float, float]:
        """How many (rows, columns) of the matrix are in view now."""
        (x0, x1), (y0, y1) = self.getViewBox().viewRange()
        rows, cols = self.matrix.shape
        return min(y1, rows) - max(y0, 0), min(x1, cols) - max(x0, 0)

    def is_zoomed(self) -> bool:
        rows, cols = self.visible_cells()
        return rows < self.matrix.shape[0] - 1e-6 or cols < self.matrix.shape[1] - 1e-6

    def _update_ticks(self, *_):
        view = self.getViewBox()
        (x0, x1), (y0, y1) = view.viewRange()
        width, height = view.width(), view.height()
        spacing = QFontMetrics(self.getAxis("top").font()).ascent() + 1  # glyphs of neighbours never touch
        rows = visible_ticks(self.row_labels, y0 - 0.5, y1 - 0.5, height / max(y1 - y0, 1e-9), spacing)
        cols = visible_ticks(self.col_labels, x0 - 0.5, x1 - 0.5, width / max(x1 - x0, 1e-9), spacing)
        self.getAxis("left").setTicks([[(i + 0.5, label) for i, label in rows]])
        self.getAxis("top").set_labels([(j + 0.5, label) for j, label in cols])

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """The (row, col) under a scene position, or None outside the matrix."""
        if not self.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.getViewBox().mapSceneToView(scene_pos)
        row, col = int(math.floor(point.y())), int(math.floor(point.x()))
        if 0 <= row < self.matrix.shape[0] and 0 <= col < self.matrix.shape[1]:
            return row, col
        return None

    def describe_cell(self, row: int, col: int) -> str:
        row_label = self.row_labels[row] if row < len(self.row_labels) else str(row)
        col_label = self.col_labels[col] if col < len(self.col_labels) else str(col)
        value = "masked" if self.masked is not None and self.masked[row, col] else f"{self.hover_values[row, col]:.4g}"
        return f"{row_label!r} (row {row}) → {col_label!r} (col {col}): {value}"

    def connect_scene(self) -> None:
        """Route the scene's mouse events to cell signals (call once the item is in a scene)."""
        if self.scene_connected or self.scene() is None:
            return
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.scene_connected = True

    def _on_mouse_moved(self, scene_pos):
        cell = self.cell_at(scene_pos)
        if cell is not None:
            self.hovered = cell
            self.cell_hovered.emit(cell[0], cell[1], float(self.hover_values[cell]))

    def _on_mouse_clicked(self, event):
        if event.double():
            if self.zoomable and self.sceneBoundingRect().contains(event.scenePos()):
                self.reset_zoom()
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.cell_clicked.emit(*cell)
