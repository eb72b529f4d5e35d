"""Light and dark themes for Qt widgets and pyqtgraph canvases."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = {
    "light": {"background": "w", "foreground": (40, 40, 40)},
    "dark": {"background": (30, 32, 38), "foreground": (220, 220, 220)},
}


def _dark_palette() -> QPalette:
    palette = QPalette()
    base, window, text = QColor(37, 39, 46), QColor(45, 48, 56), QColor(225, 225, 225)
    for role, color in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                        (QPalette.AlternateBase, window), (QPalette.Text, text), (QPalette.Button, window),
                        (QPalette.ButtonText, text), (QPalette.ToolTipBase, window), (QPalette.ToolTipText, text),
                        (QPalette.Highlight, QColor(66, 133, 244)), (QPalette.HighlightedText, QColor(255, 255, 255)),
                        (QPalette.PlaceholderText, QColor(140, 140, 140))):
        palette.setColor(role, color)
    palette.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    palette.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    return palette


def apply_theme(name: str, root: QWidget | None = None) -> None:
    """Switch the application palette and every pyqtgraph canvas under ``root`` to theme ``name``."""
    theme = THEMES[name]
    pg.setConfigOptions(background=theme["background"], foreground=theme["foreground"], antialias=True)
    app = QApplication.instance()
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if name == "dark" else app.style().standardPalette())
    if root is None:
        return
    for canvas in root.findChildren(pg.GraphicsView):
        canvas.setBackground(theme["background"])
        for item in canvas.scene().items():
            if isinstance(item, pg.AxisItem):
                item.setPen(theme["foreground"])
                item.setTextPen(theme["foreground"])
