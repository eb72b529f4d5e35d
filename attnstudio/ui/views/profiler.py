"""The profiler panel: time and peak memory against n, on log-log axes, with fitted exponents."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from attnstudio.core.backend import cupy_status
from attnstudio.core.profiling import DEFAULT_LENGTHS, DTYPES, KERNELS, ProfileConfig, ProfileResult
from attnstudio.errors import AttnStudioError
from attnstudio.fileio import write_atomic
from attnstudio.limits import LIMITS
from attnstudio.ui.profile_controller import ProfileController
from attnstudio.ui.session_model import SessionModel

REDRAW_INTERVAL_MS = 500
TIME_UNIT = ("ms", 1e-3)                          # (name, seconds per unit)
MEMORY_UNITS = (("MiB", 2**20), ("GiB", 2**30))  # (name, bytes per unit); GiB once a peak reaches 1 GiB
COLORS = {("naive", "numpy"): (214, 39, 40), ("tiled", "numpy"): (31, 119, 180), ("window", "numpy"): (44, 160, 44),
          ("naive", "cupy"): (255, 152, 150), ("tiled", "cupy"): (174, 199, 232), ("window", "cupy"): (152, 223, 138)}


class DecimalLogAxis(pg.AxisItem):
    """A log axis labelled 0.01, 0.1, 1, 10, 100 in the plot's unit, rather than 1e-2 or 10¹."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph override
        return [f"{value:g}" for value in 10 ** np.asarray(values, dtype=float) * scale]


class ProfilerView(QWidget):
    """Sweeps with progress and Cancel (run by a :class:`ProfileController`); keeps the last result in the
    session's ``profile`` field and draws it."""

    sweep_finished = Signal(object)

    def __init__(self, session_model: SessionModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model = session_model
        self.result: ProfileResult | None = None
        self.lengths = QLineEdit(",".join(str(n) for n in DEFAULT_LENGTHS))
        self.lengths.setToolTip("Sequence lengths to measure, comma-separated")
        heads, d_k, repeats = LIMITS["profile_heads"], LIMITS["profile_d_k"], LIMITS["profile_repeats"]
        self.heads = QSpinBox(minimum=heads.low, maximum=heads.high, value=8, toolTip="Heads per call")
        self.d_k = QSpinBox(minimum=d_k.low, maximum=d_k.high, value=64, toolTip="Per-head width")
        self.repeats = QSpinBox(minimum=repeats.low, maximum=repeats.high, value=3,
                                toolTip="Timed calls per point (median kept)")
        self.dtype = QComboBox()
        self.dtype.addItems(list(DTYPES))
        self.kernel_boxes = {name: QCheckBox(name, checked=True) for name in KERNELS}
        self.kernel_boxes["naive"].setToolTip("Materialises all (heads, n, n) weights: O(n²) memory")
        self.kernel_boxes["tiled"].setToolTip("Flash-style online softmax over tiles: O(n) memory")
        self.kernel_boxes["window"].setToolTip("Sliding window of ±64: O(n·w) time and memory")
        gpu_usable, gpu_detail = cupy_status()
        self.backend_boxes = {"numpy": QCheckBox("NumPy", checked=True), "cupy": QCheckBox("CuPy", checked=gpu_usable)}
        self.backend_boxes["cupy"].setEnabled(gpu_usable)
        self.backend_boxes["cupy"].setToolTip(gpu_detail if gpu_usable else f"unavailable: {gpu_detail}")
        self.run_button = QPushButton("Run sweep")
        self.run_button.setToolTip("Measure every kernel at every length (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m points")
        self.status = QLabel("Measures the time and peak memory of each kernel; memory is measured, not computed.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Lengths n", self.lengths)
        row = QHBoxLayout()
        for label, widget in (("heads", self.heads), ("d_k", self.d_k), ("repeats", self.repeats),
                              ("dtype", self.dtype)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        form.addRow(row)
        checks = QHBoxLayout()
        for box in [*self.kernel_boxes.values(), *self.backend_boxes.values()]:
            checks.addWidget(box)
        checks.addStretch(1)
        checks.addWidget(self.run_button)
        checks.addWidget(self.cancel_button)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the results as CSV or JSON, or the plots as PNG or SVG")
        self.export_button.clicked.connect(self._on_export_clicked)
        checks.addWidget(self.export_button)
        form.addRow(checks)
        form.addRow(self.progress)

        self.canvas = pg.GraphicsLayoutWidget()
        self.time_plot = self.canvas.addPlot(row=0, col=0, title="median time vs n",
                                             axisItems={"left": DecimalLogAxis("left")})
        self.memory_plot = self.canvas.addPlot(row=0, col=1, title="peak memory vs n",
                                               axisItems={"left": DecimalLogAxis("left")})
        for plot in (self.time_plot, self.memory_plot):
            plot.setLogMode(x=True, y=True)
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.setLabel("bottom", "sequence length n")
            plot.getAxis("left").enableAutoSIPrefix(False)  # our own units, never "s (x0.001)"
            plot.addLegend(offset=(10, 10))
            plot.setMenuEnabled(False)
        self._units = {"time": TIME_UNIT, "memory": MEMORY_UNITS[0]}
        self._label_axes()
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["n", "kernel", "backend", "median time (ms)", "peak memory (MiB)",
                                              "theoretical (MiB)"])
        # each column as wide as its title and values (equal widths cut "median time (ms)" at 1024x700)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        splitter = QSplitter(Qt.Vertical)
        # Before the first sweep: a sentence, not empty log axes with made-up decades.
        self.empty_note = QLabel("No measurements yet: Run sweep (Ctrl+R) plots time and peak memory against n.")
        self.empty_note.setAlignment(Qt.AlignCenter)
        self.empty_note.setWordWrap(True)
        self.plots_stack = QStackedWidget()
        self.plots_stack.addWidget(self.empty_note)
        self.plots_stack.addWidget(self.canvas)
        splitter.addWidget(self.plots_stack)
        splitter.addWidget(self.table)
        splitter.setSizes([420, 200])
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(splitter, 1)

        self._redraw_clock = QElapsedTimer()
        self._curves: dict[tuple[str, str, str], pg.PlotDataItem] = {}
        self.runner = ProfileController(self)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.busy_changed.connect(self._on_busy_changed)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        session_model.profile_changed.connect(self._on_profile_changed)
        self._on_profile_changed(session_model.session.profile)

    @property
    def running(self) -> bool:
        return self.runner.busy

    def config(self) -> ProfileConfig:
        try:
            lengths = tuple(int(part) for part in self.lengths.text().split(",") if part.strip())
        except ValueError:
            raise AttnStudioError("lengths must be comma-separated integers, e.g. 64,128,256") from None
        kernels = tuple(k for k, box in self.kernel_boxes.items() if box.isChecked())
        return ProfileConfig(lengths=lengths, kernels=kernels,
                             backends=tuple(b for b, box in self.backend_boxes.items() if box.isChecked()),
                             heads=self.heads.value(), d_k=self.d_k.value(), dtype=self.dtype.currentText(),
                             repeats=self.repeats.value()).validate()

    def start(self) -> bool:
        if self.running:
            return False
        try:
            config = self.config()
        except AttnStudioError as error:
            self.status.setText(f"⚠ {error}")
            return False
        self.plots_stack.setCurrentWidget(self.canvas)  # drawn now, before the sweep loads both cores
        self._redraw_clock.start()
        self.progress.setRange(0, len(config.lengths) * len(config.kernels) * len(config.backends))
        self.progress.setValue(0)
        self.status.setText("Running… the rest of the app stays usable.")
        self.runner.start(config)
        self._show(self.runner.partial)  # the plots and table now describe this sweep (empty), not the last one
        return True

    def cancel(self) -> None:
        if self.running:
            self.status.setText("Cancelling…")
            self.runner.cancel()

    def _on_progress(self, done: int, _total: int) -> None:
        self.progress.setValue(done)
        if self._redraw_clock.elapsed() >= REDRAW_INTERVAL_MS:  # keep the GUI thread light mid-sweep
            self._redraw_clock.restart()
            self._show(self.runner.partial, live=True)

    def _on_finished(self, result: ProfileResult) -> None:
        self.result = result
        self.session_model.update(profile=result.to_json_dict())
        self.status.setText(("Cancelled: partial results kept. " if result.cancelled else "Done. ")
                            + self._exponent_text(result))
        self.sweep_finished.emit(result)

    def _on_failed(self, reason: str, partial: ProfileResult | None) -> None:
        if partial is not None and partial.points:
            self.result = partial
            self._show(partial)
            reason = f"{reason} (partial results kept)"
        self.status.setText(f"⚠ {reason}")

    def _on_busy_changed(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_profile_changed(self, data: dict) -> None:
        if data and (self.result is None or data != self.result.to_json_dict()):
            try:
                self.result = ProfileResult.from_json_dict(data)
            except (KeyError, TypeError, ValueError):
                self.status.setText("⚠ the saved profiler results could not be read")
                return
        if self.result is not None:
            self._show(self.result)

    @staticmethod
    def _exponent_text(result: ProfileResult) -> str:
        parts = []
        for name, fitted in result.exponents().items():
            if fitted["time"] is not None:
                parts.append(f"{name}: time ∝ n^{fitted['time']:.2f}, memory ∝ n^{fitted['memory']:.2f}")
        return f"Fitted for n ≥ {result.fit_min_n()} — " + "; ".join(parts) if parts else ""

    def _show(self, result: ProfileResult, *, live: bool = False) -> None:
        """Update the curves and the table in place (new data, new legend text); rebuilding the curves mid-sweep
        costs the GUI thread tens of milliseconds while the sweep keeps both cores busy."""
        self.plots_stack.setCurrentWidget(self.canvas)
        exponents = result.exponents()
        peaks = [p.peak_bytes for p in result.points if p.status == "ok" and p.peak_bytes]
        memory_unit = MEMORY_UNITS[1] if peaks and max(peaks) >= MEMORY_UNITS[1][1] else MEMORY_UNITS[0]
        if memory_unit != self._units["memory"]:
            self._units["memory"] = memory_unit
            self._label_axes()
        wanted = set()
        for kernel in result.config.kernels:
            for backend in result.config.backends:
                points = result.series(kernel, backend)
                if not points:
                    continue
                n = np.array([p.n for p in points], dtype=float)
                fitted = exponents[f"{kernel}/{backend}"]
                for plot, values, key in ((self.time_plot, [p.median_s for p in points], "time"),
                                          (self.memory_plot, [p.peak_bytes for p in points], "memory")):
                    exponent = "" if fitted[key] is None else f" (n^{fitted[key]:.2f})"
                    name = f"{kernel}/{backend}{exponent}"
                    shown = np.maximum(np.array(values, dtype=float) / self._units[key][1], 1e-12)
                    self._curve(plot, (kernel, backend, key), name).setData(n, shown)
                    wanted.add((kernel, backend, key))
        self._draw_reference(result)
        wanted |= {("reference", "", "time"), ("reference", "", "memory")}
        for item_key in [k for k in self._curves if k not in wanted]:
            plot = self.time_plot if item_key[2] == "time" else self.memory_plot
            plot.removeItem(self._curves.pop(item_key))
        self._fill_table(result, live=live)

    def _curve(self, plot, key: tuple[str, str, str], name: str, pen=None):
        """The curve for ``key``, created on first use; its legend entry follows ``name``."""
        curve = self._curves.get(key)
        if curve is None:
            if pen is None:
                color = COLORS.get(key[:2], (120, 120, 120))
                pen = pg.mkPen(color, width=2)
                curve = plot.plot(pen=pen, symbol="o", symbolSize=6, symbolBrush=pen.color(), name=name)
            else:
                curve = plot.plot(pen=pen, name=name)
            self._curves[key] = curve
        elif curve.name() != name:
            curve.opts["name"] = name
            label = plot.legend.getLabel(curve)
            if label is not None:
                label.setText(name)
        return curve

    def _draw_reference(self, result: ProfileResult) -> None:
        """A dashed n² line through the naive kernel's largest point."""
        naive = [p for p in result.points if p.kernel == "naive" and p.status == "ok"]
        n = np.array(sorted({p.n for p in result.points}), dtype=float)
        dashed = pg.mkPen((128, 128, 128), width=1, style=Qt.DashLine)
        for plot, key in ((self.time_plot, "time"), (self.memory_plot, "memory")):
            curve = self._curve(plot, ("reference", "", key), "theory ∝ n²", pen=dashed)
            anchor = max(naive, key=lambda p: p.n) if naive else None
            value = None if anchor is None else (anchor.median_s if key == "time" else anchor.peak_bytes)
            if value:
                curve.setData(n, value / self._units[key][1] * (n / anchor.n) ** 2)
            else:
                curve.setData([], [])

    def _label_axes(self) -> None:
        self.time_plot.setLabel("left", f"median time ({self._units['time'][0]})")
        self.memory_plot.setLabel("left", f"peak memory ({self._units['memory'][0]})")

    def _fill_table(self, result: ProfileResult, *, live: bool = False) -> None:
        """The table of ``result``'s points. live (mid-sweep): only append the new rows, cheaply."""
        if not live:
            lengths = sorted({p.n for p in result.points})
            for plot in (self.time_plot, self.memory_plot):  # label the measured lengths, not log-scale decades
                plot.getAxis("bottom").setTicks([[(math.log10(n), str(n)) for n in lengths]])
        first = self.table.rowCount() if live else 0
        self.table.setRowCount(len(result.points))
        for row, p in enumerate(result.points[first:], start=first):
            values = [str(p.n), p.kernel, p.backend,
                      f"{p.median_s * 1000:.3f}" if p.median_s is not None else p.status,
                      f"{p.peak_bytes / 2**20:.2f}" if p.peak_bytes is not None else "-",
                      f"{p.theoretical_bytes / 2**20:.2f}"]
            for column, text in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(text))
        if not live:
            self.table.resizeColumnsToContents()

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export profiler results", "profile.csv",
                                              "CSV (*.csv);;JSON (*.json);;PNG image (*.png);;SVG image (*.svg)")
        if path:
            try:
                self.export(path)
                self.status.setText(f"Saved {path}")
            except AttnStudioError as error:
                self.status.setText(f"⚠ {error}")

    def export(self, path: str) -> None:
        """Write the last results (.csv, .json) or the plots (.png at 2x, .svg)."""
        suffix = Path(path).suffix.lower()
        if suffix in (".csv", ".json"):
            if self.result is None:
                raise AttnStudioError("no profiler results yet: run a sweep first")
            payload = self.result.to_csv() if suffix == ".csv" else json.dumps(self.result.to_json_dict(), indent=2)
            write_atomic(Path(path), payload.encode())
        elif suffix in (".png", ".svg"):
            from attnstudio.export.images import export_view  # noqa: PLC0415

            export_view(self.canvas, Path(path), caption=self._exponent_text(self.result) if self.result else None)
        else:
            raise AttnStudioError(f"unknown export type {suffix!r}: use .csv, .json, .png or .svg")

    def shutdown(self) -> None:
        """Stop a running sweep (the window is closing): end the child process and wait for it."""
        self.runner.shutdown()

    def export_target(self):
        """The widget that an image export of this view renders."""
        return self.canvas
