"""The model view (BertViz's): every layer x head pattern as a labelled thumbnail in one scrollable grid.

Rows are layers, columns heads. Hovering a thumbnail enlarges it with its L·H and role scores; clicking
focuses that head in the other views, or, with "Switch heads off", switches it off (or on again).
Thumbnails are plain images painted by one widget, so SmolLM2's 30 x 9 heads stay cheap.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from attnstudio.core.display import describe_display
from attnstudio.engine import mask_caption
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.ablation_controls import AblationControls
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.head_tiles import HeadPreview, colour_lookup, head_name, pattern_rgb, rgb_image, role_summary

MIN_TILE, MAX_TILE = 44, 96  # px: thumbnails grow to fill the width between these
GAP = 8  # px between thumbnails
LABEL_HEIGHT = 14  # px: the "L3·H5" line above each thumbnail
MARGIN_LEFT, MARGIN_TOP = 8, 6
SELECTED_COLOR = QColor(255, 140, 0)
ABLATED_COLOR = QColor(200, 30, 30)
HINT = "Hover a thumbnail to enlarge it; click to focus that head."


class ModelCanvas(QWidget):
    """Paints the grid; as large as its tiles need (the scroll area around it shows a part)."""

    def __init__(self, view: ModelView):
        super().__init__()
        self.view = view
        self.tile = MAX_TILE
        self.images: dict[tuple[int, int], object] = {}  # (layer, head) -> QImage, filled as tiles are painted
        self.setMouseTracking(True)
        self.setAutoFillBackground(True)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    # --- geometry -------------------------------------------------------------------------------------
    def shape(self) -> tuple[int, int]:
        result = self.view.results.result
        return (0, 0) if result is None else (result.num_layers, result.heads)

    def fit(self, available_width: int) -> None:
        """Tiles as large as the width allows (within MIN_TILE..MAX_TILE); the canvas never shrinks below them."""
        _, heads = self.shape()
        if heads:
            self.tile = max(MIN_TILE, min(MAX_TILE, (available_width - 2 * MARGIN_LEFT) // heads - GAP))
        self.setMinimumSize(self.needed_size())

    def needed_size(self) -> QSize:
        layers, heads = self.shape()
        return QSize(2 * MARGIN_LEFT + heads * (self.tile + GAP),
                     2 * MARGIN_TOP + layers * (self.tile + GAP + LABEL_HEIGHT))

    def tile_rect(self, layer: int, head: int) -> QRect:
        """Where (layer, head)'s picture is painted (its label sits just above)."""
        x = MARGIN_LEFT + head * (self.tile + GAP)
        y = MARGIN_TOP + layer * (self.tile + GAP + LABEL_HEIGHT) + LABEL_HEIGHT
        return QRect(x, y, self.tile, self.tile)

    def label_rect(self, layer: int, head: int) -> QRect:
        rect = self.tile_rect(layer, head)
        return QRect(rect.left() - GAP // 2, rect.top() - LABEL_HEIGHT, rect.width() + GAP, LABEL_HEIGHT)

    def tile_at(self, point: QPoint) -> tuple[int, int] | None:
        """The (layer, head) whose picture or label lies under ``point``, or None."""
        layers, heads = self.shape()
        head = (point.x() - MARGIN_LEFT) // (self.tile + GAP)
        layer = (point.y() - MARGIN_TOP) // (self.tile + GAP + LABEL_HEIGHT)
        if not (0 <= layer < layers and 0 <= head < heads):
            return None
        box = self.tile_rect(layer, head).united(self.label_rect(layer, head))
        return (layer, head) if box.contains(point) else None

    def label_font(self) -> QFont:
        font = QFont(self.font())
        font.setPixelSize(10 if self.tile < 60 else 11)
        return font

    # --- drawing --------------------------------------------------------------------------------------
    def image(self, layer: int, head: int):
        if (layer, head) not in self.images:
            results = self.view.results
            self.images[layer, head] = rgb_image(pattern_rgb(results.result, results.shown, layer, head,
                                                             self.view.lookup))
        return self.images[layer, head]

    def paintEvent(self, event):  # noqa: N802 - Qt override
        results = self.view.results
        if results.result is None:
            return
        painter = QPainter(self)
        painter.setFont(self.label_font())
        text = self.palette().color(self.foregroundRole())
        shown = results.shown
        off = set(shown.ablation.heads)
        layers, heads = self.shape()
        for layer in range(layers):
            for head in range(heads):
                rect = self.tile_rect(layer, head)
                if not event.rect().intersects(rect.adjusted(0, -LABEL_HEIGHT, 0, 0)):
                    continue  # scrolled away: 270 tiles cost only what is on screen
                painter.drawImage(rect, self.image(layer, head))
                selected = (layer, head) == (shown.layer, shown.head)
                ablated = (layer, head) in off
                label = ("off " if ablated else "") + head_name(results.result, layer, head).split(" · ")[0]
                painter.setPen(theme.color("accent") if selected else text)
                painter.drawText(self.label_rect(layer, head), Qt.AlignCenter, label)
                if selected or ablated:
                    pen = QPen(SELECTED_COLOR if selected else ABLATED_COLOR, 3,
                               Qt.SolidLine if selected else Qt.DashLine)
                    painter.setPen(pen)
                    painter.drawRect(rect.adjusted(-2, -2, 1, 1))

    # --- mouse ----------------------------------------------------------------------------------------
    def mouseMoveEvent(self, event):  # noqa: N802 - Qt override
        point = event.position().toPoint()
        self.view.hover(self.tile_at(point), self.mapTo(self.view, point))

    def mousePressEvent(self, event):  # noqa: N802 - Qt override
        cell = self.tile_at(event.position().toPoint())
        if cell is not None and event.button() == Qt.LeftButton:
            self.view.click(*cell)

    def leaveEvent(self, event):  # noqa: N802 - Qt override
        self.view.hover(None, QPoint())


class ModelView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.lookup = colour_lookup()
        self.canvas = ModelCanvas(self)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.canvas)
        self.scroll.setWidgetResizable(True)
        self.ablation_controls = AblationControls(session_model)
        self.caption = QLabel(HINT)
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # wraps; never widens the window
        self.preview = HeadPreview(self)
        tools = QHBoxLayout()
        tools.addStretch(1)
        tools.addWidget(self.ablation_controls)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(tools)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.caption)
        results.changed.connect(self.request_refresh)

    def refresh(self) -> None:
        result, shown = self.results.result, self.results.shown
        if result is None:
            return
        self.canvas.images.clear()  # new weights or new colour settings
        self.canvas.fit(self.scroll.viewport().width())
        self.canvas.update()
        ablation = f" Switched off: {shown.ablation.describe()}." if shown.ablation else ""
        self.caption.setText(
            f"{result.model_name} · {result.num_layers} layers × {result.heads} heads · "
            f"L{shown.layer + 1}·H{shown.head + 1} selected · mask: {mask_caption(result, shown.mask)} · "
            f"{describe_display(shown.color_scale, shown.hide_special)}.{ablation} {HINT}")
        if self.preview.head is not None:
            layer, head = self.preview.head
            if layer < result.num_layers and head < result.heads:
                self.preview.show_head(result, shown, layer, head, self.preview.pos(), self.lookup)
            else:
                self.preview.clear()

    def hover(self, cell: tuple[int, int] | None, near: QPoint) -> None:
        """Enlarge the hovered head beside the mouse, and say what it is in the caption; None hides it."""
        result = self.results.result
        if cell is None or result is None:
            self.preview.clear()
            return
        layer, head = cell
        self.preview.show_head(result, self.results.shown, layer, head, near, self.lookup)
        self.caption.setText(f"{head_name(result, layer, head)}: " + " · ".join(role_summary(result, layer, head))
                             + f". {HINT}")

    def click(self, layer: int, head: int) -> None:
        if self.ablation_controls.active():
            self.ablation_controls.toggle(layer, head)
        else:
            self.session_model.update(layer=layer, head=head)

    def text_colors(self) -> dict[str, tuple[QColor, QColor]]:
        """(text colour, background) of the labels this view paints itself."""
        palette = self.canvas.palette()
        background = palette.color(self.canvas.backgroundRole())
        return {"label": (palette.color(self.canvas.foregroundRole()), background),
                "selected": (theme.color("accent"), background)}

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.results.result is not None:
            self.canvas.fit(self.scroll.viewport().width())

    def leaveEvent(self, event):  # noqa: N802 - Qt override
        super().leaveEvent(event)
        self.preview.clear()

    def _export_widget(self):
        return self.canvas
