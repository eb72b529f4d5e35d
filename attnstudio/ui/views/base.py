"""What every result view shares: redraw only when visible, catch up when shown, a neutral state until
the first result (never empty placeholder axes)."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

WAITING_TEXT = "Computing…"
SUMMARIES_TEXT = ("Computing what this view draws from all {layers} × {heads} heads of {n} tokens (entropies, roles, "
                  "rollout)…")
LONG_TEXT = ("This view needs every attention weight (or every layer's hidden states), which a long document of "
             "{n} tokens does not keep. The Heatmap, Heads and Next token views show it.")
# A view whose whole-model summaries (entropies, rollout, roles) are missing computes them on the spot below this
# many weights (layers x heads x n_q x n_k, about 0.3 s); above it, the compute worker does (ComputeController.prepare)
# and the view keeps its picture until they are ready, so switching tabs never freezes the window.
GUI_SUMMARY_CELLS = 4_000_000


class ResultView(QWidget):
    """A view that redraws on new results only while it is on screen; hidden tabs catch up when shown.

    Subclasses set ``self.results`` (the ResultModel), implement ``refresh()`` and call
    ``request_refresh()`` from their signal handlers. Until the first result arrives a plain
    "Computing…" sheet covers the view.
    """

    supports_long = False  # True: draws long results too (core.long_attention: no (n, n) weights kept)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._stale = False
        self._has_drawn = False  # refresh() has drawn a result at least once
        self._awaiting_summaries = False  # the worker is computing summaries this view waits for
        self._waiting_text = WAITING_TEXT
        self.summary_key: str | None = None  # this view's name in engine.VIEW_SUMMARIES (the main window sets it)
        self.prepare_summaries: Callable[[], None] | None = None  # asks the worker to compute them
        self.waiting = QLabel(WAITING_TEXT, self)
        self.waiting.setAlignment(Qt.AlignCenter)
        self.waiting.setWordWrap(True)
        self.waiting.setAutoFillBackground(True)

    def has_result(self) -> bool:
        results = getattr(self, "results", None)
        return results is not None and results.result is not None

    def _long_unsupported(self) -> bool:
        results = getattr(self, "results", None)
        return (not self.supports_long and results is not None and results.result is not None
                and getattr(results.result, "long", None) is not None)

    def show_waiting(self, text: str) -> None:
        """What the sheet says until the first result (why there is none, when a compute failed)."""
        self._waiting_text = text
        self.waiting.setText(text)

    def _sync_waiting(self) -> None:
        long = self._long_unsupported()
        # a view first shown while the worker computes its summaries has nothing to draw yet: say what it waits for
        summarising = self._awaiting_summaries and not self._has_drawn and self.has_result()
        waiting = not self.has_result() or long or summarising
        if long:
            self.waiting.setText(LONG_TEXT.format(n=len(self.results.result.query_tokens)))
        elif summarising:
            result = self.results.result
            self.waiting.setText(SUMMARIES_TEXT.format(layers=result.num_layers, heads=result.heads,
                                                       n=len(result.query_tokens)))
        else:
            self.waiting.setText(self._waiting_text)
        if waiting:
            self.waiting.setGeometry(self.rect())
            self.waiting.raise_()
        self.waiting.setVisible(waiting)

    def request_refresh(self, *_args) -> None:
        if self._long_unsupported():
            self._stale = False
        elif self.isVisible() and not self._summaries_pending():
            self._stale = False
            self._refresh_now()
        else:
            self._stale = True
        self._sync_waiting()

    def _refresh_now(self) -> None:
        self.refresh()
        self._has_drawn = self.has_result()

    def _summaries_pending(self) -> bool:
        """True when the result lacks large summaries this view reads; the worker is then asked for them."""
        results = getattr(self, "results", None)
        result = None if results is None else results.result
        if result is None or self.summary_key is None or self.prepare_summaries is None \
                or not result.missing_summaries(self.summary_key) or result.weight_cells() < GUI_SUMMARY_CELLS:
            self._awaiting_summaries = False
            return False
        self.prepare_summaries()
        self._awaiting_summaries = True
        return True

    def ensure_fresh(self) -> None:
        """Bring a hidden view up to date (before exporting it, say)."""
        if self._stale and not self._long_unsupported():
            self._stale = False
            self._refresh_now()

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if not (self._stale and self._summaries_pending()):
            self.ensure_fresh()
        self._sync_waiting()

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.waiting.setGeometry(self.rect())

    def refresh(self) -> None:
        raise NotImplementedError

    def export_target(self):
        """The widget an image export of this view renders (brought up to date first)."""
        self.ensure_fresh()
        return self._export_widget()

    def _export_widget(self):
        return self
