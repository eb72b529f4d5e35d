"""Rendering a view's scene (or any widget) to PNG, SVG or PDF, with a caption, written atomically.

Every format paints the same picture: the scene is laid out once, for the screen, and each format only
changes how finely that layout is drawn. What keeps it so:

* the paint device has the screen's logical DPI. Fonts are sized in points: the old PNG export claimed
  ``scale`` x 96 dpi while painting, so every label came out ``scale`` x too large on top of the ``scale`` x
  transform, and pyqtgraph's axes, which measure their labels with the painter, dropped every other label
  and grew into the plot. A PNG's resolution is stamped only after painting.
* the scene is settled before it is painted: pyqtgraph defers auto-ranging to the next paint and Qt defers
  layouts to the event loop, so a view never painted on screen (``attnstudio export``, hidden tabs) was
  drawn with its placeholder range.
* a PNG is the portable SVG rasterised, not the scene painted into a larger image: pyqtgraph's cosmetic pens
  stay one device pixel wide under any transform, so lines would thin out as the scale grows.
* items are told they are being exported (pyqtgraph's ``setExportMode``), so scatter symbols are drawn as
  shapes rather than cached bitmaps; the SVG is made portable by ``svg_portable``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QCoreApplication,
    QEvent,
    QIODevice,
    QMarginsF,
    QPoint,
    QRectF,
    QSize,
    QSizeF,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
)
from PySide6.QtSvg import QSvgGenerator, QSvgRenderer
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QWidget

from attnstudio.errors import FileWriteError
from attnstudio.export.svg_portable import make_portable
from attnstudio.fileio import write_atomic

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
CAPTION_HEIGHT = 28.0
CAPTION_PIXELS = 11
INCH_METRES = 0.0254
SETTLE_ROUNDS = 4


def settle(source) -> None:
    """Bring a scene up to date before painting it: pending auto-ranges, then pending layouts, until stable.

    pyqtgraph's ViewBox recomputes its auto-range only when the scene is about to be painted
    (``prepareForPaint``); a new range changes tick labels, hence axis sizes, hence the layout, which Qt
    applies on a posted LayoutRequest. Off screen neither happens by itself before ``render``.
    """
    for _ in range(SETTLE_ROUNDS):
        if hasattr(source, "prepareForPaint"):
            source.prepareForPaint()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)


@contextlib.contextmanager
def _export_mode(scenes: list[QGraphicsScene], options: dict):
    """pyqtgraph items draw for export while inside (scatter symbols as paths, export antialiasing)."""
    items = [item for scene in scenes for item in scene.items() if hasattr(item, "setExportMode")]
    for item in items:
        item.setExportMode(True, options)
    try:
        yield
    finally:
        for item in items:
            item.setExportMode(False)


def _paint(painter: QPainter, source, source_rect: QRectF, size: QSizeF, caption: str | None,
           background: QColor) -> None:
    """Paint ``source_rect`` of ``source`` and the caption into (0, 0, size) in the source's own pixels."""
    target = QRectF(QPoint(0, 0), size)
    painter.fillRect(target, background)
    body = QRectF(0, 0, source_rect.width(), source_rect.height())
    if isinstance(source, QGraphicsScene):
        source.render(painter, body, source_rect, Qt.IgnoreAspectRatio)
    else:
        source.render(painter, QPoint(0, 0))
    if caption:
        font = QFont()
        font.setPixelSize(CAPTION_PIXELS)
        painter.setFont(font)
        painter.setPen(QColor(30, 30, 30) if background.lightness() > 128 else QColor(230, 230, 230))
        painter.drawText(QRectF(8, body.bottom(), target.width() - 16, target.bottom() - body.bottom()),
                         Qt.AlignLeft | Qt.AlignVCenter | Qt.TextWordWrap, caption)


def view_background(widget: QWidget) -> QColor:
    """The colour the view is drawn on (a pyqtgraph canvas's background brush; else the widget's palette)."""
    if isinstance(widget, QGraphicsView):
        brush = widget.backgroundBrush()
        if brush.style() != Qt.NoBrush and brush.color().alpha() == 255:
            return QColor(brush.color())
    return QColor(widget.palette().color(widget.backgroundRole()))


def export_view(widget: QWidget, path: Path, *, scale: float = 2.0, caption: str | None = None,
                background: QColor | None = None) -> Path:
    """Write what ``widget`` shows to ``path``: .png at ``scale`` x its size, or vector .svg / .pdf.

    A pyqtgraph canvas (a QGraphicsView) is rendered from its scene, so plots stay vector shapes
    and text stays text in SVG and PDF; any other widget is painted as it draws itself. The PNG at
    any scale, the SVG and the PDF show the same picture as the screen, only more or less finely.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise FileWriteError(f"unknown image type {suffix!r}: use .png, .svg or .pdf")
    scenes = [view.scene() for view in [widget, *widget.findChildren(QGraphicsView)]
              if isinstance(view, QGraphicsView) and view.scene() is not None]
    for scene in scenes:
        settle(scene)
    if isinstance(widget, QGraphicsView):
        source = widget.scene()
        source_rect = widget.mapToScene(widget.viewport().rect()).boundingRect()
    else:
        source, source_rect = widget, QRectF(widget.rect())
    if source_rect.width() < 1 or source_rect.height() < 1:
        raise FileWriteError("nothing to export: the view has no size yet")
    background = background or view_background(widget)
    dpi = widget.logicalDpiX()  # the layout was made for this resolution; the paint device must share it
    size = QSizeF(source_rect.width(), source_rect.height() + (CAPTION_HEIGHT if caption else 0.0))
    buffer = QBuffer()
    buffer.open(QIODevice.WriteOnly)
    # Every format is painted at the view's own size (a PNG is the SVG rasterised), so sizes in pixels,
    # such as scatter symbols', keep their on-screen value.
    with _export_mode(scenes, {"antialias": True, "background": background, "resolutionScale": 1.0}):
        if suffix == ".png":
            _write_png(buffer, source, source_rect, size, caption, background, scale, dpi, path.name)
        elif suffix == ".svg":
            _write_svg(buffer, source, source_rect, size, caption, background, dpi, path.stem)
        else:
            _write_pdf(buffer, source, source_rect, size, caption, background, dpi, path.stem)
    payload = bytes(buffer.data())
    buffer.close()
    if suffix == ".svg":
        payload = make_portable(payload)
    write_atomic(path, payload)
    return path


def _write_png(buffer: QBuffer, source, source_rect: QRectF, size: QSizeF, caption, background: QColor,
               scale: float, dpi: float, name: str) -> None:
    """Rasterise the portable SVG: a line one pixel wide on screen is ``scale`` pixels wide here.

    Painting the scene straight into a ``scale`` x image would keep every cosmetic pen (pyqtgraph's axes,
    outlines, grids) one device pixel wide, so lines would thin out as the scale grows.
    """
    svg = QBuffer()
    svg.open(QIODevice.WriteOnly)
    _write_svg(svg, source, source_rect, size, caption, background, dpi, name)
    renderer = QSvgRenderer(QByteArray(make_portable(bytes(svg.data()))))
    svg.close()
    image = QImage(QSize(round(size.width() * scale), round(size.height() * scale)), QImage.Format_ARGB32)
    image.fill(background)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setRenderHint(QPainter.TextAntialiasing)
        renderer.render(painter, QRectF(0, 0, image.width(), image.height()))
    finally:
        painter.end()
    dots_per_metre = round(round(dpi / INCH_METRES) * scale)  # prints at the size it has on screen
    image.setDotsPerMeterX(dots_per_metre)
    image.setDotsPerMeterY(dots_per_metre)
    if not image.save(buffer, "PNG"):
        raise FileWriteError(f"cannot encode {name} as PNG")


def _write_svg(buffer: QBuffer, source, source_rect: QRectF, size: QSizeF, caption, background: QColor,
               dpi: float, title: str) -> None:
    generator = QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setSize(QSize(round(size.width()), round(size.height())))
    generator.setViewBox(QRectF(QPoint(0, 0), size))
    generator.setResolution(round(dpi))
    generator.setTitle(title)
    generator.setDescription(caption or "attnstudio figure")
    painter = QPainter(generator)
    try:
        _paint(painter, source, source_rect, size, caption, background)
    finally:
        painter.end()


def _write_pdf(buffer: QBuffer, source, source_rect: QRectF, size: QSizeF, caption, background: QColor,
               dpi: float, title: str) -> None:
    writer = QPdfWriter(buffer)
    # At the screen's resolution, fonts given in points come out the size they have on screen, so the
    # scene's text stays where its layout put it; the page is the figure's size at that resolution.
    writer.setResolution(round(dpi))
    points = QSizeF(size.width() * 72 / dpi, size.height() * 72 / dpi)
    writer.setPageLayout(QPageLayout(QPageSize(points, QPageSize.Unit.Point, name="figure",
                                               matchPolicy=QPageSize.SizeMatchPolicy.ExactMatch),
                                     QPageLayout.Portrait, QMarginsF(0, 0, 0, 0)))
    writer.setTitle(title)
    writer.setCreator("attnstudio")
    painter = QPainter(writer)
    try:
        # Images (the heatmap) stay exact: Flate rather than JPEG, whose 8x8 blocks and halved colour
        # resolution would blend neighbouring cells of a small matrix.
        painter.setRenderHint(QPainter.LosslessImageRendering)
        page = painter.viewport()  # whole points: within a pixel of the figure
        painter.fillRect(page, background)
        painter.scale(page.width() / size.width(), page.height() / size.height())
        _paint(painter, source, source_rect, size, caption, background)
    finally:
        painter.end()
