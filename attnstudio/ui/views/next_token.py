"""A decoder's prediction for the token after the text: the ten most likely, as bars; click one to append it."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView

BAR_COLOUR = (68, 119, 170)


def shown(label: str) -> str:
    """A token label with its spaces visible (a bare ' ' would draw as nothing)."""
    return label.replace(" ", "␣")


class NextTokenView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = self.canvas.addPlot(row=0, col=0)
        self.plot.invertY(True)  # the most likely token on top
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "probability (%)")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=BAR_COLOUR)
        self.plot.addItem(self.bars)
        self.values: list[pg.TextItem] = []
        self.canvas.scene().sigMouseClicked.connect(self._on_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.canvas, 1)
        results.changed.connect(self.request_refresh)

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        candidates = result.next_tokens
        if not candidates:
            self.note.setText(f"{result.model_name} has no language-model head, so it predicts no next token. "
                              f"Choose a decoder (Built-in: SmolLM2-135M) to see its predictions.")
            self.canvas.setVisible(False)
            return
        self.canvas.setVisible(True)
        percentages = [candidate.probability * 100 for candidate in candidates]
        rows = list(range(len(candidates)))
        self.bars.setOpts(x0=[0.0] * len(rows), y=rows, width=percentages, height=0.7)
        self.plot.getAxis("left").setTicks([[(row, shown(c.label)) for row, c in zip(rows, candidates, strict=True)]])
        for item in self.values[len(rows):]:
            item.setVisible(False)
        for row, candidate in enumerate(candidates):
            if row == len(self.values):
                self.values.append(pg.TextItem(anchor=(0, 0.5)))
                self.plot.addItem(self.values[row])
            self.values[row].setColor(theme.color("foreground"))
            self.values[row].setText(f"{candidate.probability:.1%}")
            self.values[row].setPos(candidate.probability * 100, row)
            self.values[row].setVisible(True)
        self.plot.setXRange(0, max(percentages) * 1.25, padding=0)
        self.plot.setYRange(-0.5, len(rows) - 0.5, padding=0)
        last = shown(result.query_tokens[-1])
        self.plot.setTitle(f"{result.model_name}: the {len(rows)} most likely tokens after '{last}' "
                           f"(softmax of the logits, temperature 1)")
        self.note.setText("Click a bar to append that token to the text.")

    def _on_clicked(self, event) -> None:
        result = self.results.result
        if result is None or not result.next_tokens or not self.canvas.isVisible():
            return
        if not self.plot.vb.sceneBoundingRect().contains(event.scenePos()):
            return
        row = round(self.plot.vb.mapSceneToView(event.scenePos()).y())
        if 0 <= row < len(result.next_tokens):
            # the prediction follows the text this result was computed from, not one typed since
            self.session_model.update(text=result.session.text + result.next_tokens[row].text)

    def _export_widget(self):
        return self.canvas
