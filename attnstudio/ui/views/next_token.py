"""A decoder's prediction for the token after the text: the ten most likely, as bars under the sampling
temperature; click one to append it, or generate N tokens (greedy or seeded sampling)."""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from attnstudio.core.backend import to_numpy
from attnstudio.core.generation import sampling_probabilities
from attnstudio.ui import theme
from attnstudio.ui.generation_panel import GenerateControls
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.ablation_effect import next_token_lines, next_token_shift, probabilities_before
from attnstudio.ui.views.base import ResultView

BAR_COLOUR = (68, 119, 170)


def shown(label: str) -> str:
    """A token label with its spaces visible (a bare ' ' would draw as nothing)."""
    return label.replace(" ", "␣")


class NextTokenView(ResultView):
    supports_long = True  # the next tokens come from the last position, long document or not

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
        self.before_bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=None)  # heads switched off:
        self.plot.addItem(self.before_bars)  # each candidate's probability before, as an outline
        self.values: list[pg.TextItem] = []
        self.shift_label = pg.LabelItem("", justify="left")  # heads switched off: top 5 before/after and KL
        self.canvas.addItem(self.shift_label, row=1, col=0)
        self.canvas.scene().sigMouseClicked.connect(self._on_clicked)
        self.generate = GenerateControls(session_model, lambda: None)  # the main window gives it the app's engine
        self.generate.temperature.valueChanged.connect(self.request_refresh)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.generate)
        layout.addWidget(self.canvas, 1)
        results.changed.connect(self.request_refresh)

    def probabilities(self) -> np.ndarray:
        """(k,) softmax(logits / sampling temperature) of the shown candidates, over the whole vocabulary."""
        result = self.results.result
        everything = sampling_probabilities(to_numpy(result.forward.next_logits), self.generate.temperature.value())
        return everything[[candidate.token_id for candidate in result.next_tokens]]

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        candidates = result.next_tokens
        if not candidates:
            self.note.setText(f"{result.model_name} has no language-model head, so it predicts no next token. "
                              f"Choose a decoder (Built-in: SmolLM2-135M) to see its predictions.")
            self.canvas.setVisible(False)
            self.generate.setVisible(False)
            return
        self.canvas.setVisible(True)
        self.generate.setVisible(result.target_tokens is None)  # encoder-decoder: the bars extend the target
        probabilities = self.probabilities()  # the ranking is the logits', whatever the temperature
        percentages = [float(p) * 100 for p in probabilities]
        rows = list(range(len(candidates)))
        self.bars.setOpts(x0=[0.0] * len(rows), y=rows, width=percentages, height=0.7)
        self.plot.getAxis("left").setTicks([[(row, shown(c.label)) for row, c in zip(rows, candidates, strict=True)]])
        for item in self.values[len(rows):]:
            item.setVisible(False)
        for row in rows:
            if row == len(self.values):
                self.values.append(pg.TextItem(anchor=(0, 0.5)))
                self.plot.addItem(self.values[row])
            self.values[row].setColor(theme.color("foreground"))
            self.values[row].setText(f"{probabilities[row]:.1%}")
            self.values[row].setPos(percentages[row], row)
            self.values[row].setVisible(True)
        before = probabilities_before(result)
        if before is not None:
            self.before_bars.setOpts(x0=[0.0] * len(rows), y=rows, width=before * 100, height=0.7,
                                     pen=pg.mkPen(theme.color("foreground"), width=1.5, style=Qt.DashLine))
            percentages = percentages + list(before * 100)
        else:
            self.before_bars.setOpts(x0=[], y=[], width=[])
        self.plot.setXRange(0, max(percentages) * 1.25, padding=0)
        self.plot.setYRange(-0.5, len(rows) - 0.5, padding=0)
        target = result.target_tokens is not None  # encoder-decoder: the prediction follows the target
        last = shown((result.target_tokens or result.query_tokens)[-1])
        name = result.plain_model_name or result.model_name
        temperature = self.generate.temperature.value()
        # short enough for a 1024-pixel window; the note and the T box's tooltip say what T is
        self.plot.setTitle(html.escape(f"{name}: the {len(rows)} most likely {'target ' if target else ''}tokens "
                                       f"after '{last}' (T = {temperature:g})", quote=False))
        self.note.setText("Probabilities: softmax(logits / T) over the whole vocabulary. Click a bar to append that "
                          + ("token to the target." if target else "token to the text, or generate several."))
        if before is not None:
            self.plot.setTitle(html.escape(f"{name}: after '{last}', with {result.session.ablation.describe()} "
                                           f"(dashed: before)", quote=False))
            self.note.setText(f"{next_token_shift(result)} {self.note.text()}")
        lines = next_token_lines(result)
        self.shift_label.setText("" if not lines else (
            f"top 5 before: {html.escape(lines[0])}<br>top 5 after: {html.escape(lines[1])}<br>"
            f"KL(before ‖ after) = {lines[2]} nats"), color=theme.color("foreground"))
        self.shift_label.setVisible(bool(lines))

    def _on_clicked(self, event) -> None:
        result = self.results.result
        if result is None or not result.next_tokens or not self.canvas.isVisible():
            return
        if not self.plot.vb.sceneBoundingRect().contains(event.scenePos()):
            return
        row = round(self.plot.vb.mapSceneToView(event.scenePos()).y())
        if 0 <= row < len(result.next_tokens):
            # the prediction follows the text this result was computed from, not one typed since
            token = result.next_tokens[row].text
            if result.target_tokens is not None:  # encoder-decoder: the decoder's output grows
                target = result.session.target_text
                self.session_model.update(target_text=target + (token.lstrip() if not target.strip() else token))
            else:
                self.session_model.update(text=result.session.text + token)

    def _export_widget(self):
        return self.canvas
