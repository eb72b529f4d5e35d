"""Light and dark themes: the Qt palette and the one place pyqtgraph items get their colours from.

Every canvas item that shows text (titles, axis labels, tick labels, legends, colour-bar axes) takes the
theme's foreground from :func:`style_canvas`; :func:`apply_theme` runs it over every canvas of a window,
so a theme toggle reaches items built before it, and pyqtgraph's defaults reach items built after it.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

# Each colour of a theme; the text colours keep WCAG contrast >= 4.5:1 on the theme's backgrounds
# (tests/ui/test_look_contrast.py reads them back from the items).
THEMES = {
    "light": {
        "background": (255, 255, 255),  # canvases
        "foreground": (40, 40, 40),  # text, axes
        "accent": (180, 70, 0),  # highlighted text (the hovered token)
        "lines": (40, 90, 160),  # the Lines view's attention lines
        "mask_allowed": (255, 255, 255),
        "mask_blocked": (60, 60, 60),
    },
    "dark": {
        "background": (30, 32, 38),
        "foreground": (220, 220, 220),
        "accent": (255, 170, 80),
        "lines": (110, 170, 235),
        "mask_allowed": (112, 128, 156),  # a calm slate, not a glaring white panel
        "mask_blocked": (10, 10, 12),
    },
}
LEGEND_ALPHA = 210  # legends let the curves behind them show faintly
_current = {"name": "light"}


def current_name() -> str:
    return _current["name"]


def color(role: str) -> QColor:
    """A colour of the current theme, e.g. ``color("foreground")``."""
    return QColor(*THEMES[_current["name"]][role])


def mask_colormap() -> pg.ColorMap:
    """Blocked pairs dark, allowed pairs light, in the current theme's tones."""
    theme = THEMES[_current["name"]]
    return pg.ColorMap([0.0, 1.0], [theme["mask_blocked"], theme["mask_allowed"]])


def _dark_palette() -> QPalette:
    palette = QPalette()
    base, window, text = QColor(37, 39, 46), QColor(45, 48, 56), QColor(225, 225, 225)
    for role, value in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                        (QPalette.AlternateBase, window), (QPalette.Text, text), (QPalette.Button, window),
                        (QPalette.ButtonText, text), (QPalette.ToolTipBase, window), (QPalette.ToolTipText, text),
                        (QPalette.Highlight, QColor(66, 133, 244)), (QPalette.HighlightedText, QColor(255, 255, 255)),
                        (QPalette.PlaceholderText, QColor(140, 140, 140)), (QPalette.Link, QColor(120, 170, 255))):
        palette.setColor(role, value)
    palette.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    palette.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    palette.setColor(QPalette.Disabled, QPalette.WindowText, QColor(120, 120, 120))
    return palette


def style_canvas(canvas: pg.GraphicsView) -> None:
    """Give every item of ``canvas`` that draws text or axes the current theme's colours."""
    theme = THEMES[_current["name"]]
    foreground = QColor(*theme["foreground"])
    canvas.setBackground(theme["background"])
    for item in canvas.scene().items():
        if isinstance(item, pg.AxisItem):
            item.setPen(foreground)
            item.setTextPen(foreground)
        elif isinstance(item, pg.LegendItem):  # a legend over curves keeps its text on the theme's background
            item.setLabelTextColor(foreground)
            item.setBrush(QColor(*theme["background"], LEGEND_ALPHA))
        elif isinstance(item, pg.LabelItem):  # titles and legend entries: re-render their html in the new colour
            minimum = item._sizeHint.get(Qt.SizeHint.MinimumSize)
            item.setAttr("color", foreground)
            item.setText(item.text)
            if minimum is not None:  # an elided title keeps the minimum its panel gave it (same text, same size)
                item._sizeHint[Qt.SizeHint.MinimumSize] = minimum
                item.updateGeometry()
        elif isinstance(item, pg.TextItem):
            item.setColor(foreground)


def apply_theme(name: str, root: QWidget | None = None) -> None:
    """Switch the application palette, pyqtgraph's defaults and every canvas under ``root`` to theme ``name``."""
    theme = THEMES[name]
    _current["name"] = name
    pg.setConfigOptions(background=theme["background"], foreground=theme["foreground"], antialias=True)
    app = QApplication.instance()
    if app.style().name().lower() != "fusion":  # setting it again would re-polish every widget
        app.setStyle("Fusion")
    app.setPalette(_dark_palette() if name == "dark" else app.style().standardPalette())
    if root is None:
        return
    for canvas in root.findChildren(pg.GraphicsView):
        style_canvas(canvas)
