"""Holds the latest compute result for the views; they redraw when it changes."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from attnstudio.engine import ComputeResult


class ResultModel(QObject):
    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.result: ComputeResult | None = None

    def set_result(self, result: ComputeResult) -> None:
        self.result = result
        self.changed.emit()

    def clamp(self, layer: int, head: int) -> tuple[int, int]:
        """A (layer, head) that exists in the current result."""
        if self.result is None:
            return 0, 0
        return min(layer, self.result.num_layers - 1), min(head, self.result.heads - 1)

    def weights(self, layer: int, head: int) -> np.ndarray:
        """(n_q, n_k) weights of one head (a view into the one host copy)."""
        layer, head = self.clamp(layer, head)
        return self.result.attentions()[layer, head]
