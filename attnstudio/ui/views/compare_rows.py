"""One token's attention row as horizontal bars: keys listed top to bottom (their tokens on the left), bar
length = weight. The Compare view shows the followed word's row in A and in B side by side."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics

from attnstudio.ui import theme
from attnstudio.ui.views.matrix import visible_ticks
from attnstudio.ui.views.pipeline_panels import fit_label


class ElidedTitlePlot(pg.PlotItem):
    """A plot whose title is cut to its width with an ellipsis (the tooltip keeps it whole): a long title
    never widens the canvas past the window."""

    def setTitle(self, title=None, **args):  # noqa: N802 - pyqtgraph override
        self.full_title = title or ""
        super().setTitle(title, **args)
        self._fit_title()

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_title()

    def _fit_title(self) -> None:
        if getattr(self, "full_title", ""):
            fit_label(self.titleLabel, self.full_title, max(self.width() - 12, 40.0))


class AttentionRowPlot(ElidedTitlePlot):
    """Bars of (n_k,) weights, one per key token; the followed word's own key is drawn in the accent colour."""

    def __init__(self):
        super().__init__()
        self.setMenuEnabled(False)
        self.hideButtons()
        self.getViewBox().setMouseEnabled(x=False, y=False)
        self.invertY(True)
        self.setLabel("bottom", "weight")
        self.getAxis("bottom").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")]])  # narrow panels: 3 labels fit
        self.bars = pg.BarGraphItem(x0=[0], y=[0], width=[0], height=0.8)
        self.own = pg.BarGraphItem(x0=[0], y=[0], width=[0], height=0.8)  # the word's weight on itself
        self.addItem(self.bars)
        self.addItem(self.own)
        self.weights = np.zeros(0, dtype=np.float32)
        self.tokens: list[str] = []
        self.getViewBox().sigResized.connect(self._update_ticks)

    def set_row(self, weights: np.ndarray | None, tokens: list[str], own: int | None, title: str) -> None:
        """Show ``weights`` (n_k,) over ``tokens``; ``own`` is the followed token's own key (highlighted).

        None: nothing to show (the title says why)."""
        self.setTitle(title, size="9pt")
        if weights is None:
            self.weights, self.tokens = np.zeros(0, dtype=np.float32), []
            self.bars.setOpts(x0=[], y=[], width=[])
            self.own.setOpts(x0=[], y=[], width=[])
            self._update_ticks()
            return
        self.weights, self.tokens = np.asarray(weights, dtype=np.float32), list(tokens)
        metrics = QFontMetrics(self.getAxis("left").font())  # room for the longest label, fixed before layout
        longest = max((metrics.horizontalAdvance(label) for _, label in visible_ticks(self.tokens, 0, len(tokens), 99)),
                      default=10)
        self.getAxis("left").setWidth(min(longest, 110) + 14)
        keys = np.arange(self.weights.size)
        self.bars.setOpts(x0=np.zeros(keys.size), y=keys, width=self.weights, height=0.8,
                          brush=pg.mkBrush(theme.color("lines")), pen=None)
        if own is not None and own < keys.size:
            accent = theme.color("accent")
            self.own.setOpts(x0=[0], y=[own], width=[float(self.weights[own])], height=0.8,
                             brush=pg.mkBrush(accent), pen=pg.mkPen(accent))
        else:
            self.own.setOpts(x0=[], y=[], width=[])
        self.setXRange(0, 1, padding=0.02)
        self.setYRange(-0.5, keys.size - 0.5, padding=0)
        self._update_ticks()

    def _update_ticks(self, *_args) -> None:
        height = self.getViewBox().height()
        if not self.tokens or height <= 0:
            self.getAxis("left").setTicks([[]])
            return
        spacing = QFontMetrics(self.getAxis("left").font()).ascent() + 1
        ticks = visible_ticks(self.tokens, 0, len(self.tokens) - 1, height / len(self.tokens), spacing)
        self.getAxis("left").setTicks([ticks])
