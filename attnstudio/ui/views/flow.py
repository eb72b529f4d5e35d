"""Attention flow beside rollout (Abnar & Zuidema, 2020): the same axes, the same colour scale, one toggle.

Flow is computed by a FlowController in a worker thread when the view is shown; until it is ready the
flow panel shows the rollout, says so in its title, and the bar shows progress and a Cancel button.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from attnstudio.core.display import MASKED_RGBA, DisplayMatrix, display_weights
from attnstudio.core.flow import flow_reachable, flow_shares
from attnstudio.ui.flow_worker import FlowController
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import WEIGHTS_COLORMAP, MatrixPlot

# What the toggle shows: value -> its label.
SHOWN_MATRICES = {"both": "Rollout and flow", "flow": "Flow", "rollout": "Rollout"}
HOVER_HINTS = {True: "Hover a cell to read its rollout and flow.",  # flow shown -> what a hover reads
               False: "Hover a cell to read its rollout."}
ROLLOUT_TITLE = "rollout"
FLOW_TITLE = "attention flow"  # the caption above says what a cell holds (a share of the row's max flows)
FLOW_START_DELAY_MS = 250  # a flow starts once results stop arriving this long (typing, scripted edits)
OPEN_WIDTH = 1e6  # a shown panel's maximum width: unbounded


class FlowView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.flows = FlowController(self)
        self._start_timer = QTimer(self, singleShot=True, interval=FLOW_START_DELAY_MS)
        self._start_timer.timeout.connect(self._start_flow)
        self.flows.progress.connect(self._on_flow_progress)
        self.flows.flow_ready.connect(self._on_flow_ready)
        self.flows.failed.connect(self._on_flow_failed)
        self.flows.cancelled.connect(self._on_flow_cancelled)
        self._stopped: dict[int, str] = {}  # id(result) -> why its flow is not being computed (cancelled, failed)
        self._reachable: tuple[int, np.ndarray] | None = None  # (id(result), (n, n) bool)
        self.displays: dict[str, DisplayMatrix] = {}  # what each panel draws now
        self.flow_shown = False  # the flow panel draws the flow (not the rollout standing in for it)

        self.note = QLabel()
        self.note.setWordWrap(True)
        self.canvas = pg.GraphicsLayoutWidget()
        self.rollout_plot = MatrixPlot(ROLLOUT_TITLE, colorbar=False, axis_titles=("output token", "input token"))
        self.flow_plot = MatrixPlot(FLOW_TITLE, colorbar=False, axis_titles=("output token", "input token"))
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get(WEIGHTS_COLORMAP),
                                        interactive=False, width=12)
        self.colorbar.setImageItem([self.rollout_plot.image, self.flow_plot.image])
        for plot in (self.rollout_plot, self.flow_plot):
            plot.enable_zoom()
        self._arrange("both")
        for plot in (self.rollout_plot, self.flow_plot):
            plot.connect_scene()
            plot.cell_hovered.connect(self._on_cell_hovered)
            plot.hover_cleared.connect(lambda: self.readout.setText(HOVER_HINTS[self.flow_shown]))

        self.readout = QLabel(HOVER_HINTS[False])
        self.readout.setWordWrap(True)
        self.shown = QComboBox()
        for value, label in SHOWN_MATRICES.items():
            self.shown.addItem(label, value)
        self.shown.setToolTip("Show rollout and flow side by side, or one of them")
        self.shown.currentIndexChanged.connect(lambda _: self._arrange(self.shown.currentData()))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setFormat("flow %v/%m")
        self.progress.setToolTip("Output tokens whose flows are computed")
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop computing the flow (the rollout stays on screen)")
        self.cancel.clicked.connect(self._on_cancel_clicked)
        self.compute = QPushButton("Compute flow")
        self.compute.setToolTip("Compute the attention flow of the result on screen")
        self.compute.clicked.connect(self._on_compute_clicked)
        bar = QHBoxLayout()
        bar.addWidget(self.readout, 1)
        bar.addWidget(self.shown)
        bar.addWidget(self.progress)
        bar.addWidget(self.cancel)
        bar.addWidget(self.compute)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(bar)
        self._show_busy(False)
        self.compute.setVisible(False)
        results.changed.connect(self._on_results_changed)

    # --- layout ----------------------------------------------------------------------------------------
    def _arrange(self, shown: str) -> None:
        """Show the panels ``shown`` names: both stay in the canvas's grid (rollout, flow, colour bar), a panel
        left out is hidden and its column closed, so the other takes its room."""
        layout = self.canvas.ci
        if self.rollout_plot not in layout.items:
            layout.addItem(self.rollout_plot, row=0, col=0)
            layout.addItem(self.flow_plot, row=0, col=1)
            layout.addItem(self.colorbar, row=0, col=2)
            layout.addItem(self.rollout_plot.mask_legend, row=1, col=2)
            layout.layout.setRowStretchFactor(0, 1)  # the plots take the height, the legend row only its text's
        plots = {"both": [self.rollout_plot, self.flow_plot], "flow": [self.flow_plot],
                 "rollout": [self.rollout_plot]}[shown]
        for column, plot in enumerate((self.rollout_plot, self.flow_plot)):
            plot.setVisible(plot in plots)
            plot.setMaximumWidth(OPEN_WIDTH if plot in plots else 0)
            plot.setMinimumWidth(0)
            plot.setPreferredWidth(1)  # the stretch alone shares the width: both panels come out the same size
            layout.layout.setColumnStretchFactor(column, 1 if plot in plots else 0)
        # The same axes: zooming one panel zooms the other, while both are shown (pyqtgraph lines linked views
        # up on screen, which a hidden panel would upset).
        link = self.rollout_plot if len(plots) == 2 else None
        self.flow_plot.setXLink(link)
        self.flow_plot.setYLink(link)
        if link is None:
            for plot in plots:
                plot.reset_zoom()

    def _show_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel.setVisible(busy)

    # --- drawing -----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        if result.cross_attention:
            self.flows.cancel(quiet=True)
            self._show_busy(False)
            self.compute.setVisible(False)
            self.note.setText(result.flow_refusal() or "")
            self.canvas.setVisible(False)
            self.shown.setVisible(False)
            self.readout.setText("")
            return
        self.canvas.setVisible(True)
        refusal = result.flow_refusal()
        # a refused flow (too many tokens) would only repeat the rollout in a second, crowded panel
        self._arrange("rollout" if refusal is not None else self.shown.currentData())
        if refusal is None and not result.flow_ready() and id(result) not in self._stopped:
            if not (self.flows.busy and self.flows.result is result):
                self._start_timer.start()  # coalesced: rapid edits start one flow, once they pause
        self._show_busy(self.flows.busy and self.flows.result is result)
        rollout = result.rollout  # (n, n), computed by the compute worker
        flow = result.attention_flow() if result.flow_ready() else None  # cached: returns at once
        reachable = self._reachable_of(result)
        tokens = result.query_tokens
        rollout_display = display_weights(rollout, reachable, tokens, tokens, shown.color_scale, shown.hide_special)
        flow_display = rollout_display if flow is None else display_weights(
            flow_shares(flow), reachable, tokens, tokens, shown.color_scale, shown.hide_special)
        levels = (min(rollout_display.levels[0], flow_display.levels[0]),
                  max(rollout_display.levels[1], flow_display.levels[1]))  # one colour bar for both panels
        for plot, display in ((self.rollout_plot, rollout_display), (self.flow_plot, flow_display)):
            plot.set_matrix(display.values, display.row_labels, display.col_labels, levels=levels,
                            masked=display.masked, hover_values=display.weights)
        self.displays = {"rollout": rollout_display, "flow": flow_display}
        if self.readout.text() in (*HOVER_HINTS.values(), ""):
            self.readout.setText(HOVER_HINTS[flow is not None])  # a hover reads what the panels hold
        self.flow_shown = flow is not None
        # a refused flow leaves nothing to choose between: the toggle goes, the note says why
        self.shown.setVisible(refusal is None)
        self.colorbar.setLevels(levels)
        self.colorbar.getAxis("left").setLabel(rollout_display.colorbar_title.replace("weight", "share"))
        if rollout_display.masked is not None:
            grey = "#{:02x}{:02x}{:02x}".format(*MASKED_RGBA[:3])
            self.rollout_plot.mask_legend.setText(f"<span style='color:{grey}'>■</span> no path")
        self.rollout_plot.setTitle(ROLLOUT_TITLE)
        self.flow_plot.setTitle(FLOW_TITLE if flow is not None else self._pending_title(result, refusal))
        self._caption(result, refusal, flow is not None)

    def _pending_title(self, result, refusal: str | None) -> str:
        if refusal is not None:
            return "flow not computed (rollout shown)"
        if id(result) in self._stopped:
            return f"flow {self._stopped[id(result)]} (rollout shown)"
        return "flow computing (rollout shown)"

    def _caption(self, result, refusal: str | None, ready: bool) -> None:
        layers = f"{result.num_layers} layer(s) of {result.model_name}"
        causal = " Only earlier tokens can pass flow in a causal model: later ones are grey (no path)." \
            if result.causal_model else ""
        if ready:
            self.note.setText(f"Rollout and attention flow over {layers}: head-averaged weights mixed 50/50 with "
                              f"the residual path. Flow is the maximum flow from each output token to each input "
                              f"token (within 1e-4), drawn as shares of the output token's total.{causal}")
        elif refusal is not None:
            self.note.setText(f"Rollout over {layers}. {refusal[0].upper()}{refusal[1:]}.")
        else:
            self.note.setText(f"Rollout over {layers}. Attention flow "
                              f"{self._stopped.get(id(result), 'is being computed')}; "
                              f"the flow panel shows the rollout until it is ready.{causal}")
        self.compute.setVisible(refusal is None and not ready and id(result) in self._stopped)

    def _reachable_of(self, result) -> np.ndarray:
        if self._reachable is None or self._reachable[0] != id(result):
            self._reachable = (id(result), flow_reachable(result.attentions()))
        return self._reachable[1]

    def _start_flow(self) -> None:
        result = self.results.result
        if result is None or not self.isVisible() or result.flow_ready() or id(result) in self._stopped \
                or result.flow_refusal() is not None or (self.flows.busy and self.flows.result is result):
            return
        self.progress.setRange(0, len(result.query_tokens))
        self.progress.setValue(0)
        self.flows.start(result)
        self._show_busy(True)

    def _on_results_changed(self) -> None:
        result = self.results.result
        if self.flows.busy and self.flows.result is not result:
            self.flows.cancel(quiet=True)  # a newer result is on screen, even if this tab is hidden
        self._stopped = {key: why for key, why in self._stopped.items() if key == id(result)}
        self.request_refresh()

    # --- the flow worker -------------------------------------------------------------------------------
    def _on_flow_progress(self, result, done: int, total: int) -> None:
        if result is not self.results.result:
            return
        self._show_busy(True)
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_flow_ready(self, result) -> None:
        self._show_busy(False)
        if result is self.results.result:
            self.request_refresh()

    def _on_flow_failed(self, result, message: str) -> None:
        self._show_busy(False)
        self._stopped[id(result)] = f"failed ({message})"
        if result is self.results.result:
            self.request_refresh()

    def _on_flow_cancelled(self, result) -> None:
        self._show_busy(False)
        self._stopped[id(result)] = "cancelled"
        if result is self.results.result:
            self.request_refresh()

    def _on_cancel_clicked(self) -> None:
        self.flows.cancel()

    def _on_compute_clicked(self) -> None:
        result = self.results.result
        if result is not None:
            self._stopped.pop(id(result), None)
            self.request_refresh()

    def _on_cell_hovered(self, row: int, col: int, _value: float) -> None:
        rollout, flow = self.displays.get("rollout"), self.displays.get("flow")
        if rollout is None or row >= rollout.weights.shape[0] or col >= rollout.weights.shape[1]:
            return
        where = self.rollout_plot.describe_cell(row, col).rsplit(":", 1)[0]
        text = f"output {where}: rollout {rollout.weights[row, col]:.4g}"
        if self.flow_shown:
            raw = self.results.result.attention_flow()[rollout.row_index[row], rollout.col_index[col]]
            text += f" · flow share {flow.weights[row, col]:.4g} (max flow {raw:.4g} of 1)"
        self.readout.setText(text)

    def _export_widget(self):
        """The canvas with the flow drawn: an export waits for the flow (or computes it) rather than show the
        rollout in its place."""
        result = self.results.result
        if result is not None and result.flow_refusal() is None:
            if not result.flow_ready():
                self._stopped.pop(id(result), None)
                result.attention_flow()  # waits for a job in progress (it holds the result's flow lock)
            if not self.flow_shown:  # also a flow that finished after the last refresh, its signal dropped
                self.refresh()
        return self.canvas

    def shutdown(self) -> None:
        self._start_timer.stop()
        self.flows.shutdown()
