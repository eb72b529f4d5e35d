"""Canvases that scroll rather than clip: a narrow window or a long input gets scroll bars, never panels cut
off at the edge (pyqtgraph's GraphicsView itself never scrolls)."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGraphicsLayout, QScrollArea


def scroll_area(canvas: pg.GraphicsLayoutWidget) -> QScrollArea:
    """A frameless scroll area showing ``canvas``, which fills it whenever it is large enough."""
    area = QScrollArea()
    area.setWidget(canvas)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    return area


def fit_minimum(canvas: pg.GraphicsLayoutWidget) -> None:
    """Never let ``canvas`` be smaller than its panels' minimum sizes (axes, titles, matrices) add up to."""
    for item in canvas.ci.items:  # lay out panels whose titles just changed, so their minimum is current
        layout = getattr(item, "layout", None)
        if isinstance(layout, QGraphicsLayout):
            layout.activate()
    canvas.ci.layout.activate()
    canvas.setMinimumSize(canvas.ci.effectiveSizeHint(Qt.MinimumSize).toSize())
