"""What every result view shares: redraw only when visible, catch up when shown."""
from __future__ import annotations

from PySide6.QtWidgets import QWidget


class ResultView(QWidget):
    """A view that redraws on new results only while it is on screen; hidden tabs catch up when shown.

    Subclasses implement ``refresh()``; they call ``request_refresh()`` from their signal handlers.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._stale = False

    def request_refresh(self, *_args) -> None:
        if self.isVisible():
            self._stale = False
            self.refresh()
        else:
            self._stale = True

    def ensure_fresh(self) -> None:
        """Bring a hidden view up to date (before exporting it, say)."""
        if self._stale:
            self._stale = False
            self.refresh()

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        self.ensure_fresh()

    def refresh(self) -> None:
        raise NotImplementedError

    def export_target(self):
        """The widget an image export of this view renders (brought up to date first)."""
        self.ensure_fresh()
        return self._export_widget()

    def _export_widget(self):
        return self
