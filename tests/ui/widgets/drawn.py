"""What a widget draws, read back from the screen: a matrix cell's colour, the colour a colour map gives."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF

from tests.ui.looks import pixels


def cell_rgb(canvas, plot, row: int, col: int, image: np.ndarray | None = None) -> np.ndarray:
    """(3,) RGB painted at the centre of ``plot``'s matrix cell (row, col), as ``canvas`` shows it now."""
    image = pixels(canvas) if image is None else image
    scene_point = plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    point = canvas.mapFromScene(scene_point)
    return image[point.y(), point.x()].astype(int)


def colormap_rgb(colormap, value: float) -> np.ndarray:
    """(3,) RGB that ``colormap`` gives ``value`` (0..1)."""
    return np.asarray(colormap.map(np.array([value]), mode="byte"))[0, :3].astype(int)


def close_colour(actual: np.ndarray, expected: np.ndarray, tolerance: int = 12) -> bool:
    return int(np.abs(np.asarray(actual) - np.asarray(expected)).max()) <= tolerance
