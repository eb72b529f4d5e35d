"""Every head of the selected layer side by side, with its entropy; and a layers x heads overview."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from attnstudio.core.ablation import ABLATION_MODES, Ablation
from attnstudio.core.analysis import ROLE_THRESHOLDS, ROLES, attention_change, kl_divergence
from attnstudio.core.display import describe_display, display_weights
from attnstudio.engine import mask_caption
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import MatrixPlot, masked_backdrop
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

SELECTED_PEN = pg.mkPen((255, 140, 0), width=3)
NO_PEN = pg.mkPen(None)
ABLATED_PEN = pg.mkPen((200, 30, 30), width=3, style=Qt.DashLine)
ALL_HEADS = "all heads"
CAPTION_HINT = "Click a head to focus it in the other views. Low entropy = sharp, focused head."


def kv_label(result, head: int) -> str:
    """' · KV k' for a grouped-query model (consecutive query heads share a key/value head), else ''."""
    if not result.kv_heads:
        return ""
    return f" · KV {head // (result.heads // result.kv_heads) + 1}"


def kv_note(result) -> str:
    """A sentence saying how the query heads share key/value heads, for grouped-query models."""
    if not result.kv_heads:
        return ""
    return (f" {result.heads} query heads share {result.kv_heads} key/value heads, {result.heads // result.kv_heads} "
            f"each (KV n: the key/value head a head reads).")


class HeadsView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.grid = pg.GraphicsLayoutWidget()
        self.head_plots: list[pg.PlotItem] = []
        self.head_images: list[pg.ImageItem] = []
        self.masked_backdrops: list = []
        self.grid_heads: list[int] = []  # the head each grid panel shows
        self.overview_canvas = pg.GraphicsLayoutWidget()
        self.overview = MatrixPlot("mean attention entropy (nats) per layer and head · click to focus",
                                   colormap="magma", axis_titles=("layer", "head"))
        self.overview_canvas.addItem(self.overview, row=0, col=0)
        self.overview_canvas.addItem(self.overview.colorbar, row=0, col=1)
        self.overview.connect_scene()
        self.overview.cell_clicked.connect(lambda layer, head: self.session_model.update(layer=layer, head=head))
        self.overview.cell_hovered.connect(
            lambda layer, head, value: self.caption.setText(f"layer {layer + 1}, head {head + 1}: entropy {value:.3f}"))
        self.caption = QLabel(CAPTION_HINT)
        self.caption.setWordWrap(True)  # a long caption wraps; it never widens the window
        self.role = QComboBox()
        self.role.addItem(ALL_HEADS)
        for name, description in ROLES.items():
            self.role.addItem(name)
            self.role.setItemData(self.role.count() - 1, description, Qt.ToolTipRole)
        self.role.setToolTip("Show only the heads of the selected layer that play this role")
        self.role.activated.connect(lambda _index: self.request_refresh())
        self.ablate = QCheckBox("Switch heads off")
        self.ablate.setToolTip("When on, clicking a head switches it off (or on again) in every compute")
        self.ablation_mode = QComboBox()
        self.ablation_mode.addItems(list(ABLATION_MODES))
        self.ablation_mode.setToolTip("zero: the head outputs nothing; uniform: it attends evenly to its keys")
        self.ablation_mode.setCurrentText(session_model.session.ablation.mode)
        self.ablation_mode.activated.connect(lambda _index: self.session_model.update(
            ablation=Ablation(self.session_model.session.ablation.heads, self.ablation_mode.currentText())))
        self.clear_ablation = QPushButton("All on")
        self.clear_ablation.setToolTip("Switch every head on again")
        self.clear_ablation.clicked.connect(
            lambda: self.session_model.update(ablation=Ablation((), self.ablation_mode.currentText())))
        tools = QHBoxLayout()
        tools.addWidget(QLabel("role:"))
        tools.addWidget(self.role)
        tools.addStretch(1)
        tools.addWidget(self.ablate)
        tools.addWidget(self.ablation_mode)
        tools.addWidget(self.clear_ablation)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(scroll_area(self.grid))  # many heads or a narrow window: scroll, never clip
        splitter.addWidget(self.overview_canvas)
        splitter.setSizes([500, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(tools)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.caption)
        self.grid.scene().sigMouseClicked.connect(self._on_grid_clicked)
        results.changed.connect(self.request_refresh)

    def _build_grid(self, heads: int) -> None:
        self.grid.clear()
        self.head_plots, self.head_images, self.masked_backdrops = [], [], []
        columns = max(1, math.ceil(math.sqrt(heads)))
        for head in range(heads):
            plot = self.grid.addPlot(row=head // columns, col=head % columns)
            image = pg.ImageItem(axisOrder="row-major")
            image.setColorMap(pg.colormap.get("viridis"))
            plot.addItem(image)
            masked = masked_backdrop()  # masked cells are holes in the image over this grey
            plot.addItem(masked)
            plot.invertY(True)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.getViewBox().setMouseEnabled(x=False, y=False)
            self.head_plots.append(plot)
            self.head_images.append(image)
            self.masked_backdrops.append(masked)

    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        layer, selected = shown.layer, shown.head
        self.grid_heads = self.shown_heads(result, layer)
        if len(self.head_plots) != len(self.grid_heads):
            self._build_grid(len(self.grid_heads))
        entropy = result.head_entropy  # (layers, heads), computed by the worker
        role, roles = self.role.currentText(), result.head_roles
        off = set(result.session.ablation.heads)
        for head, plot, image, backdrop in zip(self.grid_heads, self.head_plots, self.head_images,
                                               self.masked_backdrops, strict=True):
            display = display_weights(self.results.weights(head), result.mask, result.query_tokens,
                                      result.key_tokens, shown.color_scale, shown.hide_special)
            values = display.values
            if display.masked is not None:
                values = np.where(display.masked, np.nan, values)  # transparent: the grey backdrop shows
            image.setImage(values, autoLevels=False, levels=display.levels)
            image.setRect(0, 0, values.shape[1], values.shape[0])
            backdrop.setRect(0, 0, values.shape[1], values.shape[0])
            backdrop.setVisible(display.masked is not None)
            score = f"{role} {roles[role][layer, head]:.2f}" if role != ALL_HEADS and roles and role in roles \
                else f"H={entropy[layer, head]:.2f}"
            state = "off · " if (layer, head) in off else ""
            plot.setTitle(f"{state}L{layer + 1}·H{head + 1}{kv_label(result, head)} · {score}", size="9pt")
            border = SELECTED_PEN if head == selected else ABLATED_PEN if (layer, head) in off else NO_PEN
            plot.getViewBox().setBorder(border)
            plot.getViewBox().update()  # the border is painted by the box: repaint so an old highlight goes
            plot.getViewBox().autoRange(padding=0)
        fit_minimum(self.grid)
        if role != ALL_HEADS and roles is not None and role in roles:
            self.overview.set_matrix(roles[role], [str(i + 1) for i in range(result.num_layers)],
                                     [str(h + 1) for h in range(result.heads)], levels=(0.0, 1.0))
            self.overview.setTitle(f"{role} score per layer and head ({ROLES[role]}) · click to focus")
        else:
            self.overview.set_matrix(entropy, [str(i + 1) for i in range(entropy.shape[0])],
                                     [str(h + 1) for h in range(entropy.shape[1])])
            self.overview.setTitle("mean attention entropy (nats) per layer and head · click to focus")
        self.overview_canvas.setVisible(result.num_layers > 1)
        masked_note = " Grey cells are masked." if result.mask is not None and not result.mask.all() else ""
        self.caption.setText(f"{result.model_name} · layer {layer + 1}/{result.num_layers} · head {selected + 1} "
                             f"selected · {mask_caption(result, shown.mask)} · "
                             f"{describe_display(shown.color_scale, shown.hide_special)}.{masked_note}"
                             f"{kv_note(result)} {CAPTION_HINT}")
        extra = self._caption(result, layer, role)
        if extra:
            self.caption.setText(extra + " " + self.caption.text())

    def shown_heads(self, result, layer: int) -> list[int]:
        """The heads of ``layer`` the grid shows: all, or those whose role score reaches the threshold."""
        role, roles = self.role.currentText(), result.head_roles
        if role == ALL_HEADS or roles is None or role not in roles:
            return list(range(result.heads))
        return [head for head in range(result.heads) if roles[role][layer, head] >= ROLE_THRESHOLDS[role]]

    def _caption(self, result, layer: int, role: str) -> str:
        parts = []
        if role != ALL_HEADS:
            roles = result.head_roles
            parts.append(f"{len(self.grid_heads)} of {result.heads} heads in layer {layer + 1} score "
                         f"≥ {ROLE_THRESHOLDS[role]} as {role}." if roles and role in roles
                         else f"The {role} role is not measured for this model.")
        ablation = result.session.ablation
        if ablation and result.baseline is not None:
            change = attention_change(result.baseline.attentions(), result.attentions())
            parts.append(f"Switched off: {ablation.describe()}. Mean |Δ attention| per layer: "
                         + ", ".join(f"L{i + 1} {value:.3f}" for i, value in enumerate(change)) + ".")
            parts.append(self._next_token_shift(result))
        return " ".join(part for part in parts if part)

    @staticmethod
    def _next_token_shift(result) -> str:
        """Decoders: the top next tokens before and after the ablation, and KL(before ‖ after)."""
        before, after = result.baseline, result
        if before.forward.next_logits is None or not before.next_tokens or not after.next_tokens:
            return ""

        def top(tokens) -> str:
            return ", ".join(f"{token.label!r} {token.probability:.0%}" for token in tokens[:5])

        divergence = kl_divergence(before.forward.next_logits, after.forward.next_logits)
        return (f"Next token before: {top(before.next_tokens)}; after: {top(after.next_tokens)} "
                f"(KL {divergence:.4f} nats).")

    def _on_grid_clicked(self, event) -> None:
        for head, plot in zip(self.grid_heads, self.head_plots, strict=True):
            if plot.sceneBoundingRect().contains(event.scenePos()):
                if self.ablate.isChecked():
                    self._toggle_ablated(head)
                else:
                    self.session_model.update(head=head)
                return

    def _toggle_ablated(self, head: int) -> None:
        layer = self.results.shown.layer if self.results.result is not None else self.session_model.session.layer
        heads = set(self.session_model.session.ablation.heads) ^ {(layer, head)}
        self.session_model.update(ablation=Ablation(tuple(heads), self.ablation_mode.currentText()))


    def _export_widget(self):
        return self.grid
