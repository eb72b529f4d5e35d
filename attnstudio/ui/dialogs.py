"""Small dialogs shared by the window and its helpers."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def warn(parent: QWidget, title: str, message: str) -> QMessageBox:
    """A window-modal warning that does not block the event loop (computes and timers keep running)."""
    box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, parent)
    box.setAttribute(Qt.WA_DeleteOnClose)
    box.open()
    return box
