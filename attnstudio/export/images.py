"""Rendering a view's scene (or any widget) to PNG, SVG or PDF, with a caption, written atomically."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QPoint, QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QWidget

from attnstudio.errors import FileWriteError
from attnstudio.fileio import write_atomic

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
CAPTION_HEIGHT = 28.0
SCREEN_DPI = 96


def _paint(painter: QPainter, source, source_rect: QRectF, target: QRectF, caption: str | None,
           background: QColor) -> None:
    painter.fillRect(target, background)
    body = QRectF(target)
    if caption:
        body.setHeight(target.height() - CAPTION_HEIGHT * target.width() / max(source_rect.width(), 1.0))
    if isinstance(source, QGraphicsScene):
        source.render(painter, body, source_rect, Qt.KeepAspectRatio)
    else:
        painter.save()
        painter.translate(body.topLeft())
        painter.scale(body.width() / source_rect.width(), body.height() / source_rect.height())
        source.render(painter, QPoint(0, 0))
        painter.restore()
    if caption:
        font = QFont()
        font.setPixelSize(max(6, round(11 * target.width() / max(source_rect.width(), 1.0))))
        painter.setFont(font)
        painter.setPen(QColor(30, 30, 30) if background.lightness() > 128 else QColor(230, 230, 230))
        painter.drawText(QRectF(target.left() + 8, body.bottom(), target.width() - 16, target.bottom() - body.bottom()),
                         Qt.AlignLeft | Qt.AlignVCenter | Qt.TextWordWrap, caption)


def export_view(widget: QWidget, path: Path, *, scale: float = 2.0, caption: str | None = None,
                background: QColor | None = None) -> Path:
    """Write what ``widget`` shows to ``path``: .png at ``scale`` x its size, or vector .svg / .pdf.

    A pyqtgraph canvas (a QGraphicsView) is rendered from its scene, so plots stay vector shapes
    and text stays text in SVG and PDF; any other widget is painted as it draws itself.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise FileWriteError(f"unknown image type {suffix!r}: use .png, .svg or .pdf")
    if isinstance(widget, QGraphicsView):
        source = widget.scene()
        source_rect = widget.mapToScene(widget.viewport().rect()).boundingRect()
    else:
        source, source_rect = widget, QRectF(widget.rect())
    if source_rect.width() < 1 or source_rect.height() < 1:
        raise FileWriteError("nothing to export: the view has no size yet")
    background = background or QColor("white")
    extra = CAPTION_HEIGHT if caption else 0.0
    width, height = source_rect.width(), source_rect.height() + extra
    buffer = QBuffer()
    buffer.open(QIODevice.WriteOnly)
    if suffix == ".png":
        image = QImage(QSize(int(width * scale), int(height * scale)), QImage.Format_ARGB32)
        image.setDotsPerMeterX(int(3780 * scale))
        image.setDotsPerMeterY(int(3780 * scale))
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setRenderHint(QPainter.TextAntialiasing)
        try:
            _paint(painter, source, source_rect, QRectF(0, 0, image.width(), image.height()), caption, background)
        finally:
            painter.end()
        if not image.save(buffer, "PNG"):
            raise FileWriteError(f"cannot encode {path.name} as PNG")
    elif suffix == ".svg":
        generator = QSvgGenerator()
        generator.setOutputDevice(buffer)
        generator.setSize(QSize(int(width), int(height)))
        generator.setViewBox(QRectF(0, 0, width, height))
        generator.setResolution(SCREEN_DPI)
        generator.setTitle(path.stem)
        generator.setDescription(caption or "attnstudio figure")
        painter = QPainter(generator)
        try:
            _paint(painter, source, source_rect, QRectF(0, 0, width, height), caption, background)
        finally:
            painter.end()
    else:
        writer = QPdfWriter(buffer)
        # At the screen's 96 dpi, fonts given in points come out the size they have on screen, so the
        # scene's text stays where its layout put it; the page is the figure's size (1 px = 0.75 pt).
        writer.setResolution(SCREEN_DPI)
        writer.setPageLayout(QPageLayout(QPageSize(QSizeF(width * 0.75, height * 0.75), QPageSize.Unit.Point,
                                                   name="figure",
                                                   matchPolicy=QPageSize.SizeMatchPolicy.ExactMatch),
                                         QPageLayout.Portrait, QMarginsF(0, 0, 0, 0)))
        writer.setTitle(path.stem)
        writer.setCreator("attnstudio")
        painter = QPainter(writer)
        page = painter.viewport()
        try:
            _paint(painter, source, source_rect, QRectF(0, 0, page.width(), page.height()), caption, background)
        finally:
            painter.end()
    payload = bytes(buffer.data())
    buffer.close()
    write_atomic(path, payload)
    return path

