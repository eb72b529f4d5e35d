"""The "Mask and colour" box: which mask parts apply together, and how weights become colours.

Its own group box (kept apart from the rest of the control panel); follows its fields' signals on the
session model (``mask_changed``, ``color_scale_changed``, ``hide_special_changed``) and writes back
through ``SessionModel.update``.
"""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QSpinBox,
    QWidget,
)

from attnstudio.core.display import COLOR_SCALES
from attnstudio.core.masks import MASK_PART_LABELS, MaskSpec
from attnstudio.errors import InvalidSetting
from attnstudio.limits import LIMITS
from attnstudio.ui.session_model import SessionModel

MASK_TIPS = {"causal": "Causal: each token sees only itself and the tokens before it (no peeking ahead)",
             "window": "Sliding window: each token sees only its neighbours within ±width",
             "padding": "Key padding: pad the sentence with [PAD] and hide the pads as keys"}


class MaskColourBox(QGroupBox):
    def __init__(self, session_model: SessionModel, parent: QWidget | None = None):
        super().__init__("Mask and colour", parent)
        self.session_model = session_model
        self.mask_parts: dict[str, QCheckBox] = {}
        parts = QHBoxLayout()
        for kind in MASK_PART_LABELS:
            box = QCheckBox(kind.capitalize())
            box.setToolTip(MASK_TIPS[kind] + ". Parts combine: a pair is allowed only if every checked part "
                           "allows it. Click cells in the heatmap (Edit mask) to block single pairs.")
            box.toggled.connect(lambda on, k=kind: self._update_mask(
                mask=self.session_model.session.mask.with_kind(k, on)))
            parts.addWidget(box)
            self.mask_parts[kind] = box
        self.window = QSpinBox(minimum=LIMITS["window"].low, maximum=LIMITS["window"].high, keyboardTracking=False)
        self.window.setToolTip("Sliding window: each token sees this many neighbours on each side")
        self.window.valueChanged.connect(lambda v: self._update_mask(width=v))
        self.pad_to = QSpinBox(minimum=0, maximum=LIMITS["pad_to"].high, keyboardTracking=False,
                               specialValueText="auto")
        self.pad_to.setToolTip("Key padding: pad the sentence with [PAD] to this length (auto = the next multiple "
                               "of 8); the pads are masked as keys")
        self.pad_to.valueChanged.connect(lambda v: self._update_mask(pad_to=v or None))
        self.color_scale = QComboBox()
        for value, label in COLOR_SCALES.items():
            self.color_scale.addItem(label, value)
        self.color_scale.setToolTip("How weights map to colours: auto stretches 0 to the largest weight shown; "
                                    "per row makes each row's largest weight the top colour; log shows small "
                                    "weights. Masked cells are grey whatever the scale.")
        self.color_scale.activated.connect(
            lambda _: self.session_model.update(color_scale=self.color_scale.currentData()))
        self.hide_special = QCheckBox("Hide special tokens")
        self.hide_special.setToolTip("Hide [CLS], [SEP], [PAD] and BOS/EOS rows and columns, and renormalise each "
                                     "row so it sums to 1 again")
        self.hide_special.toggled.connect(lambda on: self.session_model.update(hide_special=on))

        form = QFormLayout(self)
        form.addRow("Mask", parts)
        form.addRow("Window ±", self.window)
        form.addRow("Pad to", self.pad_to)
        form.addRow("Colour", self.color_scale)
        form.addRow(self.hide_special)
        session_model.mask_changed.connect(self._on_mask_changed)
        session_model.color_scale_changed.connect(self._on_color_scale_changed)
        session_model.hide_special_changed.connect(self._on_hide_special_changed)
        session = session_model.session
        self._on_mask_changed(session.mask)
        self._on_color_scale_changed(session.color_scale)
        self._on_hide_special_changed(session.hide_special)

    def _on_mask_changed(self, mask: MaskSpec) -> None:
        for kind, box in self.mask_parts.items():
            if box.isChecked() != mask.has(kind):
                with QSignalBlocker(box):
                    box.setChecked(mask.has(kind))
        for widget, value in ((self.window, mask.width), (self.pad_to, mask.pad_to or 0)):
            if widget.value() != value:
                with QSignalBlocker(widget):
                    widget.setValue(value)
        self.window.setEnabled(mask.has("window"))
        self.pad_to.setEnabled(mask.has("padding"))

    def _on_color_scale_changed(self, color_scale: str) -> None:
        index = self.color_scale.findData(color_scale)
        if index != self.color_scale.currentIndex():
            with QSignalBlocker(self.color_scale):
                self.color_scale.setCurrentIndex(index)

    def _on_hide_special_changed(self, hide_special: bool) -> None:
        if self.hide_special.isChecked() != hide_special:
            with QSignalBlocker(self.hide_special):
                self.hide_special.setChecked(hide_special)

    def _update_mask(self, mask=None, **changes) -> None:
        try:
            mask = dataclasses.replace(mask or self.session_model.session.mask, **changes)
        except InvalidSetting as error:
            self.session_model.rejected.emit(str(error))
            return
        self.session_model.update(mask=mask)
        self._on_mask_changed(self.session_model.session.mask)  # a refused change puts the boxes back
