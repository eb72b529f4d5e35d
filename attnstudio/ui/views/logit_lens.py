"""The logit lens: for one position, the token each layer would predict next (final norm + unembedding)."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.next_token import BAR_COLOUR, shown


class LogitLensView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.position = QSpinBox()
        self.position.setRange(1, 1)
        self.position.setToolTip("The token whose continuation each layer predicts (from 1; the last by default)")
        self.position.valueChanged.connect(lambda _: self.request_refresh())
        self._follow_last = True  # until the user picks a position, follow the text's last token
        self.position.editingFinished.connect(self._on_position_chosen)
        self.canvas = pg.GraphicsLayoutWidget()
        self.plot = self.canvas.addPlot(row=0, col=0)
        self.plot.invertY(True)  # layer 1 on top, the model's own prediction at the bottom
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "probability of the layer's top token (%)")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setTicks([[(value, str(value)) for value in range(0, 101, 20)]])  # room for labels
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=BAR_COLOUR)
        self.plot.addItem(self.bars)
        self.labels: list[pg.TextItem] = []
        row = QHBoxLayout()
        row.addWidget(QLabel("Position"))
        row.addWidget(self.position)
        row.addWidget(self.note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row)
        layout.addWidget(self.canvas, 1)
        results.changed.connect(self._on_result_changed)

    def _on_position_chosen(self) -> None:
        self._follow_last = self.position.value() == self.position.maximum()

    def _on_result_changed(self) -> None:
        result = self.results.result
        if result is not None:
            n = len(result.query_tokens)
            self.position.blockSignals(True)
            self.position.setMaximum(n)
            if self._follow_last:
                self.position.setValue(n)
            self.position.blockSignals(False)
        self.request_refresh()

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        if result.logit_lens is None:
            # an encoder-decoder (T5) has a head, but its decoder reads the encoder's output: no lens here
            self.note.setText(f"The logit lens reads decoder-only models; {result.plain_model_name} is an "
                              f"encoder-decoder (its Next token tab lists the next target tokens). Choose a decoder "
                              f"(Built-in: SmolLM2-135M) to read each layer's prediction."
                              if result.kinds is not None else
                              f"{result.model_name} has no language-model head, so there is nothing to read "
                              f"through a logit lens. Choose a decoder (Built-in: SmolLM2-135M).")
            self.canvas.setVisible(False)
            self.position.setEnabled(False)
            return
        self.canvas.setVisible(True)
        self.position.setEnabled(True)
        position = min(self.position.value(), len(result.query_tokens)) - 1
        tops = result.logit_lens(position)
        layers = list(range(len(tops)))
        percentages = [top.probability * 100 for top in tops]
        self.bars.setOpts(x0=[0.0] * len(layers), y=layers, width=percentages, height=0.7)
        self.plot.getAxis("left").setTicks([[(layer, f"layer {layer + 1}") for layer in layers]])
        for item in self.labels[len(layers):]:
            item.setVisible(False)
        for layer, top in enumerate(tops):
            if layer == len(self.labels):
                self.labels.append(pg.TextItem(anchor=(0, 0.5)))
                self.plot.addItem(self.labels[layer])
            self.labels[layer].setColor(theme.color("foreground"))
            self.labels[layer].setText(f"{shown(top.label)}  {top.probability:.0%}")
            self.labels[layer].setPos(top.probability * 100, layer)
            self.labels[layer].setVisible(True)
        self.plot.setXRange(0, 130, padding=0)
        self.plot.setYRange(-0.5, len(layers) - 0.5, padding=0)
        token = shown(result.query_tokens[position])
        self.plot.setTitle(f"{result.model_name}: each layer's next token after '{token}' "
                           f"(position {position + 1}/{len(result.query_tokens)})")
        self.note.setText("Each layer's output read through the final norm and the unembedding; the last "
                          "layer's token is the model's own prediction.")

    def _export_widget(self):
        return self.canvas
