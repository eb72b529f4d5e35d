"""Pictures of one head's pattern as plain images, and the hover preview that enlarges one.

The model view paints up to layers x heads of these (SmolLM2: 30 x 9 = 270), so a thumbnail is one
QImage coloured through the same display path as the heatmap (colour scale, hidden special tokens,
masked cells in grey), never a pyqtgraph plot per head.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from attnstudio.core.analysis import ROLES
from attnstudio.core.display import MASKED_RGBA, display_weights

PREVIEW_SIZE = 240  # px: the enlarged pattern in the hover preview


def colour_lookup(colormap: str = "viridis") -> np.ndarray:
    """(256, 3) uint8 RGB of ``colormap``, bottom to top."""
    return pg.colormap.get(colormap).getLookupTable(nPts=256, alpha=False).astype(np.uint8)


def pattern_rgb(result, shown, layer: int, head: int, lookup: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) uint8: head ``head`` of ``layer`` coloured as the heatmap colours it (masked = grey)."""
    display = display_weights(result.attentions()[layer, head], result.mask, result.query_tokens,
                              result.key_tokens, shown.color_scale, shown.hide_special)
    low, high = display.levels
    scaled = (np.nan_to_num(display.values, nan=low) - low) / max(high - low, 1e-12)  # (rows, cols) in [0, 1]
    rgb = lookup[np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)]
    if display.masked is not None:
        rgb[display.masked] = MASKED_RGBA[:3]
    return np.ascontiguousarray(rgb)


def rgb_image(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of (rows, cols, 3) uint8 pixels."""
    rows, cols, _ = rgb.shape
    return QImage(rgb.data, cols, rows, 3 * cols, QImage.Format_RGB888).copy()


def role_summary(result, layer: int, head: int) -> list[str]:
    """'previous 0.82' … for every role measured on this result, then the head's entropy."""
    lines = []
    roles = result.head_roles
    if roles:
        lines += [f"{name} {roles[name][layer, head]:.2f}" for name in ROLES if name in roles]
    lines.append(f"entropy {result.head_entropy[layer, head]:.2f} nats")
    return lines


def head_name(result, layer: int, head: int) -> str:
    """'L3·H5', with the key/value head for grouped-query models ('L3·H5 · KV 2')."""
    kv = ""
    if result.kv_heads:
        kv = f" · KV {head // (result.heads // result.kv_heads) + 1}"
    return f"L{layer + 1}·H{head + 1}{kv}"


class HeadPreview(QFrame):
    """A larger picture of one head's pattern with its name and role scores, shown beside the hovered tile.

    A child of the view it previews (not a tooltip window), so it is drawn in exports and screenshots
    exactly where the user sees it.
    """

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setFrameShape(QFrame.Box)
        self.setAutoFillBackground(True)
        self.setAttribute(Qt.WA_TransparentForMouseEvents)  # never steals the hover from the tiles below
        self.picture = QLabel()
        self.picture.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.picture.setAlignment(Qt.AlignCenter)
        self.title = QLabel()
        self.title.setTextFormat(Qt.PlainText)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.scores = QLabel()
        self.scores.setTextFormat(Qt.PlainText)
        self.scores.setWordWrap(True)
        self.scores.setFixedWidth(PREVIEW_SIZE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addWidget(self.picture)
        layout.addWidget(self.scores)
        self.head: tuple[int, int] | None = None
        self.hide()

    def show_head(self, result, shown, layer: int, head: int, near: QPoint, lookup: np.ndarray) -> None:
        """Show (layer, head) of ``result``, placed beside ``near`` (parent coordinates) inside the parent."""
        self.head = (layer, head)
        rgb = pattern_rgb(result, shown, layer, head, lookup)
        pixmap = QPixmap.fromImage(rgb_image(rgb)).scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.KeepAspectRatio,
                                                           Qt.FastTransformation)  # crisp cells, no blur
        self.picture.setPixmap(pixmap)
        self.title.setText(f"{head_name(result, layer, head)} · {len(result.query_tokens)}×{len(result.key_tokens)}")
        self.scores.setText(" · ".join(role_summary(result, layer, head)))
        self.adjustSize()
        self.move(self._place(near))
        self.show()
        self.raise_()

    def _place(self, near: QPoint) -> QPoint:
        """Right of and below the mouse, flipped to the other side where it would leave the parent."""
        parent = self.parentWidget().rect()
        x, y = near.x() + 16, near.y() + 16
        if x + self.width() > parent.right():
            x = near.x() - 16 - self.width()
        if y + self.height() > parent.bottom():
            y = parent.bottom() - self.height()
        box = QRect(max(parent.left(), x), max(parent.top(), y), self.width(), self.height())
        return box.topLeft()

    def clear(self) -> None:
        self.head = None
        self.hide()
