"""A long document's head: block summaries of the whole matrix, exact weights where zoomed in.

The (n, n) weights of a long result are never kept (see core.long_attention). The whole matrix is drawn
as the max or the mean over square tiles (at most SUMMARY_CELLS per axis), computed off the GUI thread;
until they arrive the coarser tiles the forward pass summarised stand in (at most 256 per axis). Once the
visible part of the matrix spans at most FULL_RESOLUTION_SPAN tokens each way it is recomputed weight by
weight (off the GUI thread too) and drawn over the summary. Hovering reads the exact weight of the cell under
the mouse.
"""
from __future__ import annotations

import math
import queue
import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from attnstudio.core.display import MASKED_RGBA
from attnstudio.core.long_attention import SUMMARY_CELLS, SUMMARY_KINDS, Cancelled
from attnstudio.engine import mask_caption
from attnstudio.ui.views.matrix import VerticalTokenAxis, visible_ticks

FULL_RESOLUTION_SPAN = 1024  # zoomed in to at most this many tokens each way: every weight is drawn
# A region of at most this many weights is computed on the GUI thread (258 x 258 tokens: 0.3 ms), sparing the
# hand-off to the worker and back, which took 100-250 ms on a loaded machine; larger ones go to the worker.
INLINE_REGION_CELLS = 512 * 512
RANGE_SETTLE_MS = 40  # a wheel burst or a drag recomputes the visible region once it pauses
THUMBNAIL_CELLS = 64  # the heads grid's thumbnails: at most 64 x 64 tiles
HOVER_HINT = "Hover a cell to read its exact weight; the wheel zooms (full resolution from 1,024 tokens across)."


class LatestWorker(QObject):
    """Runs ``work(*args)`` in a daemon thread for the newest request only; emits ready(key, result) or
    failed(key, message). ``work`` gets ``stale()``, true once a newer request is waiting, to stop early."""

    ready = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, work, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self._work = work
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._latest = None
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def request(self, key, *args) -> None:
        self._latest = key
        self._jobs.put((key, args))

    def _serve(self) -> None:
        while True:
            key, args = self._jobs.get()
            if key != self._latest:
                continue  # a newer request came meanwhile
            try:
                payload, signal = self._work(*args, stale=lambda k=key: k != self._latest), self.ready
            except Cancelled:
                continue  # stopped for a newer request, which answers instead (not a failure to show)
            except Exception as error:  # noqa: BLE001 - a failure is a status line, never a dead thread
                payload, signal = f"{type(error).__name__}: {error}", self.failed
            try:
                signal.emit(key, payload)
            except RuntimeError:  # the view is gone
                return


def head_summaries(long, layer: int, head: int, *, stale):
    """(max, mean, tile, masked tiles) of one head at SUMMARY_CELLS (the worker's job)."""
    tile_max, tile = long.summary(layer, head, "max", SUMMARY_CELLS, cancelled=stale)
    tile_mean, _ = long.summary(layer, head, "mean", SUMMARY_CELLS)
    return tile_max, tile_mean, tile, long.tiles_masked(tile)


def region_weights(long, layer: int, head: int, region: tuple[int, int, int, int], *, stale):
    """(exact weights, allowed or None) of rows [r0, r1) x cols [c0, c1) (the worker's job)."""
    del stale
    row0, row1, col0, col1 = region
    return long.weights(layer, head, (row0, row1), (col0, col1)), long.mask.region(row0, row1, col0, col1)


def summary_now(long, layer: int, head: int, kind: str, cells: int):
    """(values, tile, masked tiles) available without waiting: the summary asked for if it is at hand, else the
    forward pass's (coarser) one."""
    if not long.has_summary(layer, head, cells):
        cells = long.forward_cells
    values, tile = long.summary(layer, head, kind, cells)
    return values, tile, long.tiles_masked(tile)


class LongHeatmapPanel(QWidget):
    """One head of a long result; the HeatmapView shows it instead of its own canvas for long results."""

    def __init__(self, results, parent: QWidget | None = None):
        super().__init__(parent)
        self.results = results
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = pg.PlotItem(axisItems={"top": VerticalTokenAxis()})
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showAxis("top")
        self.plot.hideAxis("bottom")
        self.plot.setLabel("left", "query")
        self.plot.setLabel("top", "key")
        for side in ("left", "top"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
            self.plot.getAxis(side).setStyle(tickLength=4)  # ticks point to their labels, never over the weights
        self.colormap = pg.colormap.get("viridis")
        self.backdrop = pg.ImageItem(axisOrder="row-major")  # masked tiles in the mask grey
        self.summary_image = pg.ImageItem(axisOrder="row-major")
        self.detail_image = pg.ImageItem(axisOrder="row-major")  # exact weights of the visible region
        for image in (self.summary_image, self.detail_image):
            image.setColorMap(self.colormap)
        for z, image in enumerate((self.backdrop, self.summary_image, self.detail_image)):
            image.setZValue(z)
            self.plot.addItem(image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.colormap, interactive=False, width=12)
        self.colorbar.setImageItem([self.summary_image, self.detail_image])
        self.title = QLabel()  # a label, not the plot's title: a long title wraps instead of squeezing the colour bar
        self.title.setWordWrap(True)
        self.title.setAlignment(Qt.AlignCenter)
        self.canvas.addItem(self.plot, row=0, col=0)
        self.canvas.addItem(self.colorbar, row=0, col=1)

        self.kind = QComboBox()
        self.kind.addItems([f"block {kind}" for kind in SUMMARY_KINDS])
        self.kind.setToolTip("What a tile of the whole-matrix picture shows: the largest weight in it, or the mean")
        self.kind.activated.connect(lambda _index: self.refresh())
        self.reset_zoom = QPushButton("Reset zoom")
        self.reset_zoom.setToolTip("Show the whole matrix again (or double-click it)")
        self.reset_zoom.clicked.connect(self.show_all)
        self.readout = QLabel(HOVER_HINT)
        self.readout.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.readout, 1)
        bar.addWidget(self.kind)
        bar.addWidget(self.reset_zoom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(bar)

        self.worker = LatestWorker(head_summaries, "attnstudio-summaries", self)
        self.worker.ready.connect(self._on_summary_ready)
        self.worker.failed.connect(lambda _key, message: self.readout.setText(f"⚠ block summaries failed: {message}"))
        self.detail_worker = LatestWorker(region_weights, "attnstudio-zoom", self)  # the GUI thread only draws
        self.detail_worker.ready.connect(self._on_detail_ready)
        self.detail_worker.failed.connect(lambda _key, message: self.readout.setText(f"⚠ zoom failed: {message}"))
        self._settle = QTimer(self, singleShot=True, interval=RANGE_SETTLE_MS)
        self._settle.timeout.connect(self._draw_detail)
        self.plot.getViewBox().sigRangeChanged.connect(self._on_range_changed)
        self.plot.getViewBox().sigResized.connect(self._update_ticks)
        self._scene_connected = False
        self.result = None
        self._drawn = None  # (result id, layer, head, kind) of the picture on screen
        self.n = 1
        self.tile = 1
        self.summary: np.ndarray | None = None
        self.summary_final = False
        self.detail_region: tuple[int, int, int, int] | None = None  # rows [r0, r1) x cols [c0, c1)
        self.detail: np.ndarray | None = None

    # --- what is shown ------------------------------------------------------------------------------------
    @property
    def kind_name(self) -> str:
        return SUMMARY_KINDS[self.kind.currentIndex()]

    def _key(self):
        shown = self.results.shown
        return id(self.result), shown.layer, shown.head

    def refresh(self) -> None:
        """Draw the shown head of the result on screen (a new result, layer, head or summary kind)."""
        self._connect_scene()
        result, shown = self.results.result, self.results.shown
        long = result.long
        if result is not self.result:
            self.result, self.n = result, long.n_q
            self.detail_region = self.detail = None
            self._limit_view()
            self.show_all()
        layer, head = shown.layer, shown.head
        if (*self._key(), self.kind_name) == self._drawn:
            self._set_title()  # the same picture (a layer and a head changed together publish twice)
            return
        self._drawn = (*self._key(), self.kind_name)
        values, tile, masked = summary_now(long, layer, head, self.kind_name, SUMMARY_CELLS)
        self.summary_final = long.has_summary(layer, head, SUMMARY_CELLS)
        self._show_summary(values, tile, masked)
        if not self.summary_final:
            self.worker.request(self._key(), long, layer, head)
        self.detail_region = self.detail = None  # another head: the region is recomputed
        self.detail_image.setVisible(False)
        self._draw_detail()
        self._set_title()

    def _on_summary_ready(self, key, payload) -> None:
        if self.result is None or key != self._key():
            return  # another head (or result) is on screen now
        tile_max, tile_mean, tile, masked = payload
        self.summary_final = True
        self._show_summary(tile_max if self.kind_name == "max" else tile_mean, tile, masked)
        self._set_title()

    def _show_summary(self, values: np.ndarray, tile: int, masked: np.ndarray | None) -> None:
        self.summary, self.tile = values, tile
        cells_q, cells_k = values.shape
        shown = np.where(masked, np.nan, values) if masked is not None else values
        self.summary_levels = (0.0, float(values.max()) or 1.0)
        self.summary_image.setImage(shown, autoLevels=False, levels=self.summary_levels)
        self.summary_image.setRect(0, 0, cells_k * tile, cells_q * tile)
        grey = np.zeros((1, 1, 4), np.uint8)
        grey[...] = MASKED_RGBA
        self.backdrop.setImage(grey, autoLevels=False)
        self.backdrop.setRect(0, 0, self.n, self.n)
        self.backdrop.setVisible(masked is not None)
        self._update_colorbar()

    def _set_title(self) -> None:
        result, shown = self.result, self.results.shown
        if self.detail is not None:
            what = "every weight in view"
        else:
            what = f"{self.kind_name} over {self.tile}×{self.tile}-token blocks" + ("" if self.summary_final
                                                                                 else " (refining…)")
        self.title.setText(f"{result.model_name} · layer {shown.layer + 1}/{result.num_layers} · head "
                           f"{shown.head + 1}/{result.heads} · {mask_caption(result, shown.mask)} · "
                           f"{self.n} tokens: {what}")

    def _update_colorbar(self) -> None:
        if self.detail is not None:
            levels, title = self.detail_levels, "weight (exact)"
        else:
            levels, title = self.summary_levels, f"weight (block {self.kind_name})"
        self.colorbar.setLevels(levels)
        self.colorbar.getAxis("left").setLabel(title)

    # --- zoom: the visible region at full resolution ----------------------------------------------------
    def _limit_view(self) -> None:
        self.plot.getViewBox().setLimits(xMin=0, xMax=self.n, yMin=0, yMax=self.n, minXRange=4, minYRange=4)

    def show_all(self) -> None:
        self.plot.getViewBox().setRange(xRange=(0, self.n), yRange=(0, self.n), padding=0)

    def visible_region(self) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1): the tokens in view and one more on each side, so the exact picture covers the
        edges of the view (no sliver of the block summary beside it)."""
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        row0, row1 = max(0, math.floor(y0) - 1), min(self.n, math.ceil(y1) + 1)
        col0, col1 = max(0, math.floor(x0) - 1), min(self.n, math.ceil(x1) + 1)
        return row0, max(row1, row0 + 1), col0, max(col1, col0 + 1)

    def _on_range_changed(self, *_args) -> None:
        self._update_ticks()
        if self.result is not None:
            self._settle.start()

    def _draw_detail(self) -> None:
        """Ask for the visible region's exact weights once it spans at most FULL_RESOLUTION_SPAN tokens."""
        if self.result is None:
            return
        row0, row1, col0, col1 = region = self.visible_region()
        if max(row1 - row0, col1 - col0) > FULL_RESOLUTION_SPAN + 2:
            self.detail_region = self.detail = None
            self.detail_image.setVisible(False)
            self._update_colorbar()
            self._set_title()
        elif region != self.detail_region:
            shown, key = self.results.shown, (*self._key(), region)
            if (row1 - row0) * (col1 - col0) <= INLINE_REGION_CELLS:  # a few ms: no hand-off to the worker
                self._on_detail_ready(key, region_weights(self.result.long, shown.layer, shown.head, region,
                                                          stale=None))
            else:
                self.detail_worker.request(key, self.result.long, shown.layer, shown.head, region)

    def _on_detail_ready(self, key, payload) -> None:
        region = key[3]
        if self.result is None or key[:3] != self._key() or region != self.visible_region():
            return  # another head, or the view moved on: a newer request is on its way
        (row0, row1, col0, col1), (weights, allowed) = region, payload
        self.detail, self.detail_region = weights, region
        picture = weights if allowed is None else np.where(allowed, weights, np.nan)
        self.detail_levels = (0.0, float(weights.max()) or 1.0)
        self.detail_image.setImage(picture, autoLevels=False, levels=self.detail_levels)
        self.detail_image.setRect(col0, row0, col1 - col0, row1 - row0)
        self.detail_image.setVisible(True)
        self._update_colorbar()
        self._set_title()

    def _update_ticks(self, *_args) -> None:
        if self.result is None:
            return
        view = self.plot.getViewBox()
        (x0, x1), (y0, y1) = view.viewRange()
        spacing = 14
        rows = visible_ticks(self.result.query_tokens, y0 - 0.5, y1 - 0.5, view.height() / max(y1 - y0, 1e-9), spacing)
        cols = visible_ticks(self.result.key_tokens, x0 - 0.5, x1 - 0.5, view.width() / max(x1 - x0, 1e-9), spacing)
        dense_rows = (y1 - y0) <= view.height() / spacing  # every label fits: show tokens, else positions
        dense_cols = (x1 - x0) <= view.width() / spacing
        self.plot.getAxis("left").setTicks([[(i + 0.5, label if dense_rows else str(i)) for i, label in rows]])
        self.plot.getAxis("top").set_labels([(j + 0.5, label if dense_cols else str(j)) for j, label in cols])

    # --- hover: the exact weight -------------------------------------------------------------------------
    def _connect_scene(self) -> None:
        if self._scene_connected or self.plot.scene() is None:
            return
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._scene_connected = True

    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        if self.result is None or not self.plot.getViewBox().sceneBoundingRect().contains(scene_pos):
            return None
        point = self.plot.getViewBox().mapSceneToView(scene_pos)
        row, col = math.floor(point.y()), math.floor(point.x())
        return (row, col) if 0 <= row < self.n and 0 <= col < self.n else None

    def describe_cell(self, row: int, col: int) -> str:
        """The exact weight of (row, col), with the block value the summary shows there."""
        result, shown = self.result, self.results.shown
        long = result.long
        allowed = long.mask.region(row, row + 1, col, col + 1)
        value = "masked" if allowed is not None and not allowed[0, 0] else \
            f"{long.weight(shown.layer, shown.head, row, col):.4g}"
        text = (f"layer {shown.layer + 1}, head {shown.head + 1} · query {result.query_tokens[row]!r} (row {row}) → "
                f"{result.key_tokens[col]!r} (col {col}): {value}")
        if self.detail is None and self.summary is not None:
            tile = self.tile
            block = self.summary[row // tile, col // tile]
            text += (f" · block {self.kind_name} {block:.4g} over rows {row // tile * tile}–"
                     f"{min(self.n, (row // tile + 1) * tile) - 1}, cols {col // tile * tile}–"
                     f"{min(self.n, (col // tile + 1) * tile) - 1}")
        return text

    def _on_mouse_moved(self, scene_pos) -> None:
        if not self.isVisible():
            return
        cell = self.cell_at(scene_pos)
        if cell is not None:
            self.readout.setText(self.describe_cell(*cell))

    def _on_mouse_clicked(self, event) -> None:
        if event.double() and self.isVisible() and self.plot.sceneBoundingRect().contains(event.scenePos()):
            self.show_all()


def long_thumbnail(result, layer: int, head: int, kind: str = "max"):
    """(picture with masked tiles NaN, levels, tile side) of one head from the forward pass's summaries."""
    values, tile, masked = summary_now(result.long, layer, head, kind, THUMBNAIL_CELLS)
    picture = np.where(masked, np.nan, values) if masked is not None else values
    return picture, (0.0, float(values.max()) or 1.0), tile
