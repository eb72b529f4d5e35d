"""Reading what a view shows from its objects: text colours against backgrounds, panels against viewports.

Colours come from the items themselves (axis pens, the html of LabelItems, QLabel palettes, the
colours the Lines view paints with), never from a screenshot, so a failure names the item.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QAbstractScrollArea, QLabel, QScrollArea, QWidget

HTML_COLOR = re.compile(r"color\s*:\s*(#[0-9a-fA-F]{6,8})")


@dataclass
class TextSample:
    where: str
    text: str
    color: QColor
    background: QColor

    @property
    def contrast(self) -> float:
        return contrast_ratio(self.color, self.background)


def relative_luminance(color: QColor) -> float:
    """WCAG 2.x relative luminance of an sRGB colour."""
    channels = np.array([color.redF(), color.greenF(), color.blueF()])
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def over(color: QColor, background: QColor) -> QColor:
    """``color`` composited over an opaque ``background`` (semi-transparent text is as faint as it looks)."""
    alpha = color.alphaF()
    mixed = [alpha * a + (1 - alpha) * b for a, b in zip(color.getRgbF()[:3], background.getRgbF()[:3], strict=True)]
    return QColor.fromRgbF(*mixed)


def contrast_ratio(color: QColor, background: QColor) -> float:
    lighter, darker = sorted((relative_luminance(over(color, background)), relative_luminance(background)),
                             reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def html_colors(html: str) -> list[QColor]:
    """Every colour a piece of Qt html sets on its text (Qt writes #AARRGGBB for translucent ones)."""
    colors = []
    for value in HTML_COLOR.findall(html):
        if len(value) == 9:  # #AARRGGBB
            color = QColor(f"#{value[3:]}")
            color.setAlpha(int(value[1:3], 16))
        else:
            color = QColor(value)
        colors.append(color)
    return colors


def _text_item_colors(item) -> list[QColor]:
    """The colours of a QGraphicsTextItem: those its html sets, else its default text colour."""
    return html_colors(item.toHtml()) or [item.defaultTextColor()]


def canvas_text(canvas: pg.GraphicsView, where: str) -> list[TextSample]:
    """Every visible text item in a pyqtgraph canvas, with the canvas background behind it."""
    background = canvas.backgroundBrush().color()
    samples = []
    for item in canvas.scene().items():
        if not item.isVisible():
            continue
        name = f"{where}/{type(item).__name__}"
        if isinstance(item, pg.AxisItem):
            ticks = item._tickLevels or item.tickValues(*item.range, max(item.width(), item.height()))
            if item.style["showValues"] and ticks:
                samples.append(TextSample(f"{name}({item.orientation}) ticks", "ticks", item.textPen().color(),
                                          background))
            if item.label.isVisible() and item.labelText:
                for color in _text_item_colors(item.label):
                    samples.append(TextSample(f"{name}({item.orientation}) label", item.labelText, color, background))
        elif isinstance(item, pg.LabelItem):
            behind = background
            legend = item.parentItem()
            while legend is not None and not isinstance(legend, pg.LegendItem):
                legend = legend.parentItem()
            if legend is not None and legend.brush().style() != Qt.NoBrush:
                behind = over(legend.brush().color(), background)  # a legend's own panel
            if item.text and item.text.strip():
                for color in _text_item_colors(item.item):
                    samples.append(TextSample(name, item.text, color, behind))
        elif isinstance(item, pg.TextItem):
            samples.append(TextSample(name, item.textItem.toPlainText(), item.color, background))
    return samples


def label_text(label: QLabel, where: str) -> list[TextSample]:
    palette = label.palette()
    background = palette.color(label.backgroundRole())
    colors = html_colors(label.text()) or [palette.color(label.foregroundRole())]
    return [TextSample(f"{where}/QLabel", label.text()[:40], color, background) for color in colors]


def canvases(widget: QWidget) -> list[pg.GraphicsView]:
    """The pyqtgraph canvases in ``widget``, itself included."""
    own = [widget] if isinstance(widget, pg.GraphicsView) else []
    return own + widget.findChildren(pg.GraphicsView)


def view_text(view: QWidget, where: str) -> list[TextSample]:
    """Every visible text item of a view: canvases, QLabels, and text a view paints itself."""
    samples = []
    for canvas in canvases(view):
        if canvas is view or canvas.isVisibleTo(view):
            samples += canvas_text(canvas, where)
    for label in view.findChildren(QLabel):
        if label.isVisibleTo(view) and label.text().strip():
            samples += label_text(label, where)
    painted = getattr(view, "text_colors", None)
    if painted is not None:
        for role, (color, background) in painted().items():
            samples.append(TextSample(f"{where}/painted {role}", role, color, background))
    return samples


def low_contrast(samples: list[TextSample], minimum: float = 4.5) -> list[str]:
    return [f"{s.where} {s.text!r}: {s.color.name()} on {s.background.name()} = {s.contrast:.2f}:1"
            for s in samples if s.contrast < minimum]


# --- geometry ---------------------------------------------------------------------------------------------

def _scroll_ancestor(widget: QWidget) -> QScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            return parent
        parent = parent.parentWidget()
    return None


def reachable(widget: QWidget, rect: QRect, window: QWidget) -> str | None:
    """None when ``rect`` (in ``widget``'s coordinates) can be seen in ``window``: it lies inside the widget,
    and the widget is either wholly on screen or the content of a scroll area whose scroll bars reach all of
    it. Otherwise a sentence saying what is cut off."""
    if not widget.rect().contains(rect):
        return f"{rect} runs past its widget {widget.rect()}"
    scroll = _scroll_ancestor(widget)
    if scroll is not None and scroll.widget() is not None and scroll.widget().isAncestorOf(widget):
        content = scroll.widget()
        inner = QRect(widget.mapTo(content, rect.topLeft()), rect.size())
        if not content.rect().contains(inner):
            return f"{rect} runs past the scrolled content {content.rect()}"
        viewport = scroll.viewport()
        bars = ((scroll.horizontalScrollBar(), content.width() - viewport.width()),
                (scroll.verticalScrollBar(), content.height() - viewport.height()))
        for bar, needed in bars:
            if needed > 0 and bar.maximum() < needed:
                return f"the scroll bar reaches {bar.maximum()} px of the {needed} px needed"
        widget, rect = scroll, scroll.rect()
    top_left = widget.mapTo(window, rect.topLeft())
    visible = window.rect()
    if not visible.contains(QRect(top_left, rect.size())):
        return f"{QRect(top_left, rect.size())} lies outside the window {visible}"
    return None


def clipped_panels(view: QWidget, window: QWidget) -> list[str]:
    """Every plot panel, colour bar and title of the view's canvases that cannot be seen whole."""
    problems = []
    for canvas in canvases(view):
        if canvas is not window and not canvas.isVisibleTo(window):
            continue
        for item in canvas.scene().items():
            if not isinstance(item, (pg.PlotItem, pg.ColorBarItem)) or not item.isVisible():
                continue
            scene_rect = item.sceneBoundingRect()
            rect = canvas.mapFromScene(scene_rect).boundingRect()
            rect = QRect(rect.left(), rect.top(), rect.width() - 1, rect.height() - 1)
            problem = reachable(canvas, rect, window)
            if problem:
                title = getattr(getattr(item, "titleLabel", None), "text", "") or type(item).__name__
                problems.append(f"{type(view).__name__} panel {title!r}: {problem}")
    return problems


def scroll_areas_needing(widget: QWidget, orientation: str) -> list[QAbstractScrollArea]:
    """Scroll areas under ``widget`` whose scroll bar in ``orientation`` ('horizontal'/'vertical') is shown."""
    found = []
    for area in widget.findChildren(QAbstractScrollArea):
        bar = area.horizontalScrollBar() if orientation == "horizontal" else area.verticalScrollBar()
        if area.isVisibleTo(widget) and bar.isVisibleTo(area) and bar.maximum() > 0:
            found.append(area)
    return found


def pixels(widget) -> np.ndarray:
    """(height, width, 3) RGB of what ``widget`` draws now."""
    image = widget.grab().toImage().convertToFormat(QImage.Format_RGB32)
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width(), 2::-1].copy()
