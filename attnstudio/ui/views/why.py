"""Why this score (BertViz's neuron view) and the head finder, for one (query, key) cell.

Bars of the head's query and key vectors and their element-wise product; its sum is the raw
score, × 1/√d_k and / temperature gives the score the trace holds, and the row's softmax (the
selected key highlighted) gives the weight. Beside it, every (layer, head) ranked by the weight
of the same cell; clicking one focuses it.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from attnstudio.core.analysis import rank_heads, score_breakdown
from attnstudio.errors import InvalidSetting
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import visible_ticks
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

STEPS = ("q", "k", "product", "softmax")
FINDER_ENTRY = "L{layer}·H{head}   {weight:.3f}"  # one ranked head: layer, head (from 1), its weight on the cell
FINDER_PADDING = 12  # px: the item's own margins inside the list


def _bar_plot(title: str, left: str) -> pg.PlotItem:
    plot = pg.PlotItem(title=title)
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.getViewBox().setMouseEnabled(x=False, y=False)
    plot.setLabel("left", left)
    plot.addLine(y=0, pen=pg.mkPen((128, 128, 128), width=1))
    return plot


class WhyView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.breakdown = None
        self.canvas = pg.GraphicsLayoutWidget()
        self.plots = {"q": _bar_plot("", "q"), "k": _bar_plot("", "k"), "product": _bar_plot("", "q⊙k"),
                      "softmax": _bar_plot("", "weight")}
        self.bars = {}
        for row, name in enumerate(STEPS):
            self.canvas.addItem(self.plots[name], row=row, col=0)
            self.bars[name] = pg.BarGraphItem(x=[0], height=[0], width=0.8)
            self.plots[name].addItem(self.bars[name])
        self.plots["softmax"].setYRange(0, 1)
        self.selected_band = pg.BarGraphItem(x=[0], height=[1], width=1.0)  # finds the key even at weight 0
        self.selected_band.setZValue(-10)
        self.selected_bar = pg.BarGraphItem(x=[0], height=[0], width=0.8)
        self.plots["softmax"].addItem(self.selected_band)
        self.plots["softmax"].addItem(self.selected_bar)
        self.plots["softmax"].setLabel("bottom", "key")
        self.plots["product"].setLabel("bottom", "dimension of the head (d_k)")

        self.query_choice, self.key_choice = QComboBox(), QComboBox()
        self.query_choice.setToolTip("The query token (row) whose score is explained")
        self.key_choice.setToolTip("The key token (column) whose score is explained")
        self.query_choice.activated.connect(lambda index: self._set_cell(query=index))
        self.key_choice.activated.connect(lambda index: self._set_cell(key=index))
        self.formula = QLabel()
        self.formula.setWordWrap(True)
        self.formula.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.finder_title = QLabel()
        self.finder_title.setWordWrap(True)
        self.finder = QListWidget()
        self.finder.setToolTip("Every layer and head, highest weight for this cell first; click one to focus it")
        self.finder.itemClicked.connect(self._on_finder_clicked)
        # wide enough for its widest entry beside a scroll bar: at 1024x700 the splitter left it ~90 px, which
        # cut "L1·H3   1.000" to "L1·H3   1.00" and lower ranks' weights to two digits
        widest = self.finder.fontMetrics().horizontalAdvance(FINDER_ENTRY.format(layer=88, head=88, weight=0.888))
        self.finder.setMinimumWidth(widest + self.finder.verticalScrollBar().sizeHint().width()
                                    + 2 * self.finder.frameWidth() + FINDER_PADDING)

        choices = QHBoxLayout()
        for label, widget in (("query", self.query_choice), ("→ key", self.key_choice)):
            choices.addWidget(QLabel(label))
            choices.addWidget(widget, 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(choices)
        self.canvas_area = scroll_area(self.canvas)  # a narrow tab scrolls, never clips a panel
        left_layout.addWidget(self.canvas_area, 1)
        left_layout.addWidget(self.formula)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.finder_title)
        right_layout.addWidget(self.finder, 1)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter, 1)
        for signal in (session_model.layer_changed, session_model.head_changed, session_model.cell_changed):
            signal.connect(self.request_refresh)
        results.changed.connect(self.request_refresh)

    def _set_cell(self, query: int | None = None, key: int | None = None) -> None:
        current = self.session_model.session.cell
        self.session_model.update(cell=(current[0] if query is None else query, current[1] if key is None else key))

    def current_cell(self) -> tuple[int, int]:
        """The session's cell clamped to the current result's tokens."""
        result = self.results.result
        query, key = self.session_model.session.cell
        return min(query, len(result.query_tokens) - 1), min(key, len(result.key_tokens) - 1)

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        layer, head = self.results.shown.layer, self.results.shown.head
        query, key = self.current_cell()
        self._fill_choices(result, query, key)
        self._show_finder(result, query, key, layer, head)
        session = self.session_model.session
        try:
            bias = result.position_bias
            own = {} if result.attention_kind is None else {  # T5: no 1/sqrt(d_k), a relative position bias
                "scale": 1.0, "bias": 0.0 if bias is None else float(bias[head, query, key])}
            cell = score_breakdown(result.forward.traces[layer], layer, head, query, key, score=session.score,
                                   temperature=session.temperature, mask=result.mask, **own)
        except InvalidSetting as error:
            self.breakdown = None
            self.canvas_area.setVisible(False)
            self.formula.setText(f"No breakdown: {error}.")
            return
        self.breakdown = cell
        self.canvas_area.setVisible(True)
        self._draw(result, cell)
        fit_minimum(self.canvas)

    def _fill_choices(self, result, query: int, key: int) -> None:
        for box, tokens, index in ((self.query_choice, result.query_tokens, query),
                                   (self.key_choice, result.key_tokens, key)):
            labels = [f"{i}: {token}" for i, token in enumerate(tokens)]
            if [box.itemText(i) for i in range(box.count())] != labels:
                box.clear()
                box.addItems(labels)
            box.setCurrentIndex(index)

    def _draw(self, result, cell) -> None:
        bar_color, accent = theme.color("lines"), theme.color("accent")
        q_token, k_token = result.query_tokens[cell.query], result.key_tokens[cell.key]
        where = f"layer {cell.layer + 1} · head {cell.head + 1}"
        dims = np.arange(cell.q.size)
        for name, values in (("q", cell.q), ("k", cell.k), ("product", cell.product)):
            self.bars[name].setOpts(x=dims, height=values, width=0.8, brush=pg.mkBrush(bar_color), pen=None)
            self.plots[name].setXRange(-0.5, cell.q.size - 0.5, padding=0)
        self.plots["q"].setTitle(html.escape(f"query vector of {q_token!r} (row {cell.query}) · {where}", quote=False))
        self.plots["k"].setTitle(html.escape(f"key vector of {k_token!r} (col {cell.key})", quote=False))
        bias = f" + position bias {cell.bias:.4g}" if result.attention_kind is not None else ""
        self.plots["product"].setTitle(f"q ⊙ k, summed: q·k = {cell.dot:.4g};  × {cell.scale:.4g}{bias} / temperature "
                                       f"{cell.temperature:g} = score {cell.score:.4g}")
        weights = cell.row_weights
        keys = np.arange(weights.size)
        self.bars["softmax"].setOpts(x=keys, height=weights, width=0.8, brush=pg.mkBrush(bar_color), pen=None)
        self.selected_bar.setOpts(x=[cell.key], height=[cell.weight], width=0.8, brush=pg.mkBrush(accent),
                                  pen=pg.mkPen(accent, width=2))
        band = theme.color("accent")
        band.setAlpha(50)
        self.selected_band.setOpts(x=[cell.key], height=[1.0], width=1.0, brush=pg.mkBrush(band), pen=None)
        self.plots["softmax"].setXRange(-0.5, weights.size - 0.5, padding=0)
        self.plots["softmax"].setTitle(html.escape(f"softmax of the row of {q_token!r}: weight on {k_token!r} = "
                                                   f"{cell.weight:.4f}", quote=False))
        width = max(self.plots["softmax"].getViewBox().width(), 200.0)
        ticks = visible_ticks(result.key_tokens, 0, weights.size - 1, width / max(weights.size, 1) / 4)
        self.plots["softmax"].getAxis("bottom").setTicks([ticks])
        masked = "" if np.isfinite(cell.row_scores[cell.key]) else " (masked: the key is hidden from this query)"
        factor = (f"× {cell.scale:.4g} (1/√{cell.q.size} for scaled dot, 1 for dot)" if result.attention_kind is None
                  else f"× 1 (T5 folds 1/√d_k into its weights){bias}")
        self.formula.setText(
            f"{where}: score = (q·k = {cell.dot:.4g}) {factor}"
            f" / temperature {cell.temperature:g} = {cell.score:.4g}{masked};  softmax over the row → "
            f"{cell.weight:.4f}")

    def _show_finder(self, result, query: int, key: int, layer: int, head: int) -> None:
        ranked = rank_heads(result.attentions(), query, key)
        self.finder_title.setText(f"Heads ranked by {result.query_tokens[query]!r} → {result.key_tokens[key]!r}")
        self.finder.clear()
        for match in ranked:
            item = QListWidgetItem(FINDER_ENTRY.format(layer=match.layer + 1, head=match.head + 1,
                                                       weight=match.weight))
            item.setData(Qt.UserRole, (match.layer, match.head))
            self.finder.addItem(item)
            if (match.layer, match.head) == (layer, head):
                item.setSelected(True)
                self.finder.setCurrentItem(item)
        self.finder.scrollToTop()  # the strongest heads first; the focused one is highlighted where it ranks

    def _on_finder_clicked(self, item: QListWidgetItem) -> None:
        layer, head = item.data(Qt.UserRole)
        self.session_model.update(layer=layer, head=head)

    def _export_widget(self):
        return self.canvas
