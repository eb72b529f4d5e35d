"""The Pipeline's panels, Transformer Explainer style: each says in one line what it is, and the numbers of the
hovered (query, key) pair, the same pair marked in every panel so the steps can be followed from one to the next.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem

from attnstudio.core.analysis import score_breakdown
from attnstudio.errors import InvalidSetting
from attnstudio.ui import theme
from attnstudio.ui.views.matrix import MatrixPlot

# What each step is, in one line (the panel's title names the formula).
DESCRIPTIONS = {
    "queries": "each token's query: what it looks for",
    "keys": "each token's key: what it offers to queries",
    "values": "each token's value: what it passes on",
    "scores": "how well each query matches each key",
    "mask": "which keys each query may see",
    "masked": "blocked pairs become −∞ before the softmax",
    "weights": "each row sums to 1: how much each key counts",
    "context": "each token's new vector: a weighted mix of values",
}
ROW_OF_QUERY = ("queries", "context")  # panels whose rows are the queries (columns: dimensions)
ROW_OF_KEY = ("keys", "values")  # panels whose rows are the keys


@dataclass(frozen=True)
class PairNumbers:
    """Every step's number for one (query, key) pair of one head, as the pipeline computed it."""

    query: int
    key: int
    query_token: str
    key_token: str
    dot: float | None  # q·k (None for the additive score, which is not a dot product)
    scale: float | None
    temperature: float
    score: float  # the score the trace holds: q·k × scale / temperature
    allowed: bool
    weight: float
    bias: float | None = None  # the relative position bias added to q·k × scale (T5's self-attention), else None

    def panel_values(self) -> dict[str, str]:
        """The line each panel shows under its description for this pair."""
        q, k = f"{self.query_token!r} (row {self.query})", f"{self.key_token!r} (row {self.key})"
        if self.dot is not None:
            score = f"{self._product('q·k ')} / T {self.temperature:g} = {self.score:.4g}"
        else:
            score = f"score {self.score:.4g}"
        return {"queries": f"query of {q}", "keys": f"key of {k}",
                "values": f"value of {k}, passed on × {self.weight:.4f}",
                "scores": f"{self.query_token!r}→{self.key_token!r}: {score}",
                "mask": "allowed" if self.allowed else "blocked",
                "masked": f"{self.score:.4g}" if self.allowed else "−∞",
                "weights": f"softmax → {self.weight:.4f}",
                "context": f"output of {q} = Σ weights · values"}

    def _product(self, name: str) -> str:
        """q·k times the scale, plus the position bias where the model adds one (in brackets, as T divides both)."""
        product = f"{name}{self.dot:.4g} × {self.scale:.4g}"
        return product if self.bias is None else f"({product} + bias {self.bias:.4g})"

    def chain(self) -> str:
        """The whole path from q and k to the weight, for the read-out line."""
        pair = f"{self.query_token!r} (row {self.query}) → {self.key_token!r} (col {self.key}): "
        score = (f"{self._product('q·k = ')} / T {self.temperature:g} = {self.score:.4g}"
                 if self.dot is not None else f"score = {self.score:.4g}")
        masked = f"{self.score:.4g}" if self.allowed else "blocked → −∞"
        return f"{pair}{score}; mask: {masked}; softmax → {self.weight:.4f}"


def pair_numbers(result, shown, arrays: dict[str, np.ndarray], query: int, key: int) -> PairNumbers:
    """The numbers of (query, key) in the shown layer and head; ``arrays`` are the pipeline's steps."""
    allowed = bool(arrays["mask"][query, key])
    dot = scale = None
    bias = 0.0
    own = {}
    if result.attention_kind is not None:  # T5: no 1/sqrt(d_k) (folded into its weights), a position bias
        bias = 0.0 if result.position_bias is None else float(result.position_bias[shown.head, query, key])
        own = {"scale": 1.0, "bias": bias}
    try:
        cell = score_breakdown(result.forward.traces[shown.layer], shown.layer, shown.head, query, key,
                               score=shown.score, temperature=shown.temperature, mask=result.mask, **own)
        dot, scale = cell.dot, cell.scale
    except InvalidSetting:
        pass  # additive scores: no q·k to show, the score itself still is
    return PairNumbers(query, key, result.query_tokens[query], result.key_tokens[key], dot, scale,
                       shown.temperature, float(arrays["scores"][query, key]), allowed,
                       float(arrays["weights"][query, key]), bias if result.position_bias is not None else None)


def fit_label(label: pg.LabelItem, text: str, available: float) -> None:
    """Show the longest prefix of plain ``text`` that fits ``available`` px (with an ellipsis); the tooltip keeps
    it all. The label takes rich text, so tokens such as '<pad>' are escaped rather than read as tags."""
    label.setText(html.escape(text, quote=False))
    shown = text
    if label.itemRect().width() > available:
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            label.setText(html.escape(text[:middle].rstrip(), quote=False) + "…")
            low, high = (middle, high) if label.itemRect().width() <= available else (low, middle - 1)
        shown = text[:low].rstrip() + "…"
        label.setText(html.escape(shown, quote=False))
    label.setToolTip(text if shown != text else "")
    label.setMinimumWidth(0)  # the panel may narrow the line with it
    label._sizeHint[Qt.SizeHint.MinimumSize] = (0, label._sizeHint[Qt.SizeHint.MinimumSize][1])
    label.updateGeometry()


class PipelinePanel(MatrixPlot):
    """A pipeline step: its matrix, a line saying what it is, a line of the hovered pair's numbers, a marker."""

    def __init__(self, key: str, title: str, colormap: str):
        super().__init__(colormap=colormap, colorbar=False)
        self.key = key
        self.setTitle(title, size="9pt")
        self.description = pg.LabelItem("", size="8pt", justify="left")
        self.value = pg.LabelItem("", size="8pt", justify="left")
        self.layout.addItem(self.description, 4, 1)
        self.layout.addItem(self.value, 5, 1)
        self.texts = {self.description: DESCRIPTIONS[key], self.value: ""}
        self.marker = QGraphicsRectItem()
        self.marker.setZValue(20)
        self.marker.setVisible(False)
        self.addItem(self.marker)
        self._fit_lines()

    def set_value(self, text: str) -> None:
        self.texts[self.value] = text
        self._fit_lines()

    def _fit_lines(self) -> None:
        available = max(self.width() - 40, 40.0)
        for label, text in self.texts.items():
            fit_label(label, text, available)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if hasattr(self, "texts"):
            self._fit_lines()

    def mark(self, numbers: PairNumbers | None) -> None:
        """Outline the pair's cell (square panels) or its row (vector panels); None hides the marker."""
        if numbers is None:
            self.marker.setVisible(False)
            return
        rows, cols = self.matrix.shape
        if self.key in ROW_OF_QUERY:
            rect = QRectF(0, numbers.query, cols, 1)
        elif self.key in ROW_OF_KEY:
            rect = QRectF(0, numbers.key, cols, 1)
        else:
            rect = QRectF(numbers.key, numbers.query, 1, 1)
        pen = QPen(theme.color("accent"), 2)
        pen.setCosmetic(True)  # two pixels wide however large the cells
        self.marker.setPen(pen)
        self.marker.setRect(rect)
        self.marker.setVisible(rect.bottom() <= rows and rect.right() <= cols)

    def pair_for(self, row: int, col: int, previous: tuple[int, int]) -> tuple[int, int]:
        """The (query, key) pair a hovered cell of this panel stands for (vector panels keep the other index)."""
        if self.key in ROW_OF_QUERY:
            return row, previous[1]
        if self.key in ROW_OF_KEY:
            return previous[0], row
        return row, col
