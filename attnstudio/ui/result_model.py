"""Holds the result on screen and the settings it is shown with; the views redraw when either changes.

A result is *published* here: its layer and head are clamped once, to what the result has, into
``shown`` — the result's own session with the display fields (layer, head, colour scale, hide
special tokens) the user picked. Every view, title, caption and hover text reads ``result`` and
``shown`` from here, never the session being edited, so a picture and its labels always agree.
The session keeps the user's own layer/head (a stale result never writes back into it).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PySide6.QtCore import QObject, Signal

from attnstudio.engine import ComputeResult
from attnstudio.session import Session
from attnstudio.ui.session_model import DISPLAY_FIELDS, SessionModel


class ResultModel(QObject):
    changed = Signal()

    def __init__(self, session_model: SessionModel, parent: QObject | None = None):
        super().__init__(parent)
        self._session_model = session_model
        self.result: ComputeResult | None = None
        self.shown: Session | None = None  # the settings of what is on screen (None before the first result)
        for name in sorted(DISPLAY_FIELDS):
            session_model.signal(name).connect(self._on_display_changed)

    def set_result(self, result: ComputeResult) -> None:
        """Publish ``result``: from now on every view shows it, with the user's display settings."""
        self.result = result
        self._publish()

    def _on_display_changed(self, _value) -> None:
        if self.result is not None:
            self._publish()

    def _publish(self) -> None:
        result, wanted = self.result, self._session_model.session
        self.shown = dataclasses.replace(  # the one place layer and head are clamped
            result.session, layer=min(wanted.layer, result.num_layers - 1), head=min(wanted.head, result.heads - 1),
            color_scale=wanted.color_scale, hide_special=wanted.hide_special)
        self.changed.emit()

    @property
    def layer(self) -> int:
        return self.shown.layer

    @property
    def head(self) -> int:
        return self.shown.head

    def weights(self, head: int | None = None) -> np.ndarray:
        """(n_q, n_k) weights of the shown layer's ``head`` (default: the shown head), a view of the host copy."""
        return self.result.attentions()[self.shown.layer, self.shown.head if head is None else head]
