"""The model view: every layer x head thumbnail, labelled, hover-enlarged, clickable; MiniLM and SmolLM2 (30 x 9)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication

from attnstudio.core.ablation import Ablation
from attnstudio.session import Session
from attnstudio.ui.views.head_tiles import PREVIEW_SIZE, colour_lookup, pattern_rgb
from attnstudio.ui.views.heads import HeadsView
from attnstudio.ui.views.model_view import ModelView
from tests.core.test_cli import run_cli
from tests.ui.conftest import build_view
from tests.ui.looks import pixels


def hover(widget, point) -> None:
    point = QPointF(point)
    QApplication.sendEvent(widget, QMouseEvent(QEvent.MouseMove, point, widget.mapToGlobal(point), Qt.NoButton,
                                               Qt.NoButton, Qt.NoModifier))


def tile_pixels_match(view, image: np.ndarray, layer: int, head: int, expected_rgb: np.ndarray) -> None:
    """Sample the middle of a few cells of the painted tile against the pattern's own colours."""
    rect = view.canvas.tile_rect(layer, head)
    rows, cols, _ = expected_rgb.shape
    for row, col in [(0, 0), (rows - 1, cols - 1), (rows // 2, cols // 3), (1, 0)]:
        x = rect.left() + int((col + 0.5) * rect.width() / cols)
        y = rect.top() + int((row + 0.5) * rect.height() / rows)
        assert np.abs(image[y, x].astype(int) - expected_rgb[row, col]).max() <= 3, (layer, head, row, col)


def test_every_head_is_a_labelled_thumbnail_with_a_hover_preview(qtbot):
    view, _model, results, result = build_view(qtbot, ModelView, Session(backend="numpy"))
    image = pixels(view.canvas)
    lookup = colour_lookup()
    for layer, head in [(0, 0), (2, 3), (5, 11)]:
        tile_pixels_match(view, image, layer, head, pattern_rgb(result, results.shown, layer, head, lookup))
    # every tile's label is drawn: text-coloured pixels in each label box
    background = np.array(view.canvas.palette().color(view.canvas.backgroundRole()).getRgb()[:3])
    for layer in range(6):
        for head in range(12):
            box = view.canvas.label_rect(layer, head)
            area = image[box.top():box.bottom() - 2, box.left():box.right()].reshape(-1, 3).astype(int)
            assert (np.abs(area - background).max(axis=1) > 100).sum() > 10, f"L{layer + 1}·H{head + 1} has no label"
    assert view.canvas.tile_at(view.canvas.tile_rect(2, 3).center()) == (2, 3)
    hover(view.canvas, view.canvas.tile_rect(2, 3).center())
    assert view.preview.isVisible() and view.preview.head == (2, 3)
    assert view.preview.title.text() == "L3·H4 · 13×13"
    roles = result.head_roles
    assert f"previous {roles['previous'][2, 3]:.2f}" in view.preview.scores.text()
    assert f"entropy {result.head_entropy[2, 3]:.2f} nats" in view.preview.scores.text()
    assert "L3·H4: previous" in view.caption.text()
    # the enlarged picture is the same pattern, cell for cell
    shown = view.preview.picture.pixmap().toImage()
    expected = pattern_rgb(result, results.shown, 2, 3, lookup)
    cell = PREVIEW_SIZE / 13
    for row, col in [(0, 0), (12, 12), (6, 4)]:
        color = shown.pixelColor(int((col + 0.5) * cell), int((row + 0.5) * cell))
        assert np.abs(np.array(color.getRgb()[:3]) - expected[row, col]).max() <= 1
    assert view.rect().contains(view.preview.geometry()), "the preview stays inside the view"
    hover(view.canvas, view.canvas.rect().bottomRight() - QPointF(1, 1).toPoint())
    assert not view.preview.isVisible()


def test_clicking_focuses_a_head_or_switches_it_off(qtbot):
    view, model, results, _ = build_view(qtbot, ModelView, Session(backend="numpy"))
    qtbot.mouseClick(view.canvas, Qt.LeftButton, pos=view.canvas.tile_rect(4, 7).center())
    assert (model.session.layer, model.session.head) == (4, 7)
    qtbot.waitUntil(lambda: (results.shown.layer, results.shown.head) == (4, 7))
    view.ablation_controls.ablate.setChecked(True)
    qtbot.mouseClick(view.canvas, Qt.LeftButton, pos=view.canvas.tile_rect(1, 2).center())
    assert model.session.ablation == Ablation(((1, 2),))
    qtbot.mouseClick(view.canvas, Qt.LeftButton, pos=view.canvas.tile_rect(1, 2).center())
    assert not model.session.ablation


def test_selected_and_switched_off_heads_are_framed(qtbot):
    session = Session(backend="numpy", layer=1, head=1, ablation=Ablation(((3, 5),)))
    view, _, _, _ = build_view(qtbot, ModelView, session)
    image = pixels(view.canvas)

    def frame(layer, head):
        rect = view.canvas.tile_rect(layer, head).adjusted(-2, -2, 1, 1)
        return image[rect.top(), rect.left() + 4:rect.right() - 4].astype(int)

    assert (np.abs(frame(1, 1) - [255, 140, 0]).max(axis=1) < 30).mean() > 0.8, "orange frame on the selected head"
    assert (np.abs(frame(3, 5) - [200, 30, 30]).max(axis=1) < 30).mean() > 0.3, "red dashes on a switched-off head"
    assert "Switched off: zeroed L4·H6" in view.caption.text()


def test_smollm2_thirty_layers_by_nine_heads_scroll_and_preview(qtbot):
    view, _, results, result = build_view(qtbot, ModelView, Session(model="smollm2", backend="numpy"))
    assert (result.num_layers, result.heads) == (30, 9)
    qtbot.waitUntil(lambda: view.scroll.verticalScrollBar().maximum() > 0)
    assert view.canvas.height() >= 30 * view.canvas.tile, "every layer has its row; the grid scrolls"
    assert view.canvas.width() <= view.scroll.viewport().width(), "nine heads fit the width"
    image = view.canvas.grab().toImage()  # the whole canvas, scrolled-away rows included
    grabbed = pixels(view.canvas)
    assert grabbed.shape[0] == image.height()
    tile_pixels_match(view, grabbed, 29, 8, pattern_rgb(result, results.shown, 29, 8, colour_lookup()))
    view.scroll.ensureVisible(0, view.canvas.height())
    qtbot.wait(10)
    hover(view.canvas, view.canvas.tile_rect(29, 8).center())
    assert view.preview.title.text().startswith("L30·H9 · KV 3")
    assert f"induction {result.head_roles['induction'][29, 8]:.2f}" in view.preview.scores.text()
    assert view.rect().contains(view.preview.geometry())


def test_heads_grid_thumbnails_have_the_hover_preview(qtbot):
    view, _, _results, result = build_view(qtbot, HeadsView, Session(backend="numpy", layer=2))
    plot = view.head_plots[5]
    centre = view.grid.mapFromScene(plot.sceneBoundingRect().center())
    view.grid.scene().sigMouseMoved.emit(plot.sceneBoundingRect().center())
    assert view.preview.isVisible() and view.preview.head == (2, 5)
    assert view.preview.title.text() == "L3·H6 · 13×13"
    assert f"local {result.head_roles['local'][2, 5]:.2f}" in view.preview.scores.text()
    assert view.rect().contains(view.preview.geometry()) and centre is not None
    view.grid.scene().sigMouseMoved.emit(QPointF(-50, -50))
    assert not view.preview.isVisible()


@pytest.mark.parametrize("view_name", ["model", "multi_lines"])
def test_cli_exports_the_view_headless(tmp_path, view_name):
    out = tmp_path / f"{view_name}.png"
    done = run_cli("export", "The cat sat on the mat.", "--view", view_name, "--layer", "2", "--lines-heads", "1,3",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr

    image = QImage(str(out))
    assert image.width() > 300 and image.height() > 200
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20, "the export draws a picture, not a blank sheet"
