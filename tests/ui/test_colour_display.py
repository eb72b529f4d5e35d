"""What the heatmap and heads grid draw for each colour scale, hidden special tokens and masked cells.

Read from the drawn pixels: the colour at each cell's centre in a grab of the canvas.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage

from attnstudio.core.display import MASKED_RGBA
from attnstudio.core.masks import MaskSpec
from attnstudio.export.images import export_view
from attnstudio.session import Session
from tests.core.test_cli import run_cli
from tests.ui.conftest import wait_for_result

VIRIDIS = pg.colormap.get("viridis")
BOTTOM, TOP = (np.array(VIRIDIS.map([0.0, 1.0], mode="byte"))[:, :3]).astype(int)


def canvas_pixels(canvas) -> np.ndarray:
    image = canvas.grab().toImage().convertToFormat(QImage.Format_RGB32)
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width(), 2::-1].astype(int)  # (h, w, RGB)


def cell_colours(canvas, plot, rows: int, cols: int) -> np.ndarray:
    """(rows, cols, 3) colour drawn at the centre of every cell of ``plot``."""
    pixels = canvas_pixels(canvas)
    box = plot.getViewBox()
    colours = np.zeros((rows, cols, 3), dtype=int)
    for r in range(rows):
        for c in range(cols):
            point = canvas.mapFromScene(box.mapViewToScene(QPointF(c + 0.5, r + 0.5)))
            colours[r, c] = pixels[point.y(), point.x()]
    return colours


def close(a, b, tolerance=12) -> np.ndarray:
    return np.abs(np.asarray(a) - np.asarray(b)).sum(-1) <= tolerance


@pytest.fixture
def masked_window(make_window, qtbot):
    window = make_window(Session(backend="numpy", mask=MaskSpec(("causal", "window"), width=2)))
    window.resize(1300, 860)
    qtbot.wait(50)
    return window


def test_masked_cells_are_grey_with_a_legend_not_the_colour_of_zero(masked_window):
    window = masked_window
    heatmap, result = window.views["heatmap"], window.results.result
    n = len(result.query_tokens)
    allowed = result.mask
    expected = np.tril(np.ones((n, n), bool)) & (np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 2)
    np.testing.assert_array_equal(allowed, expected)  # causal AND window, not window alone
    colours = cell_colours(heatmap.canvas, heatmap.plot, n, n)
    assert close(colours[~allowed], MASKED_RGBA[:3]).all(), "every masked cell is drawn in the neutral grey"
    assert not close(colours[allowed], MASKED_RGBA[:3]).any(), "no allowed cell is grey"
    assert not close(np.array(MASKED_RGBA[:3]), BOTTOM, 60), "the grey is far from the colour map's 0"
    assert "masked" in heatmap.plot.mask_legend.text
    assert "causal + sliding window ±2" in heatmap.plot.titleLabel.text
    assert "causal + sliding window ±2" in window.files.caption()
    # the heads grid draws the masked cells grey as well
    window.session_model.update(view="heads")
    heads = window.views["heads"]
    thumb = cell_colours(heads.grid, heads.head_plots[0], n, n)
    assert close(thumb[~allowed], MASKED_RGBA[:3], 30).all()
    # and so does the pipeline's softmax step
    window.session_model.update(view="pipeline")
    pipeline = window.views["pipeline"]
    steps = cell_colours(pipeline.canvas, pipeline.plots["weights"], n, n)
    assert close(steps[~allowed], MASKED_RGBA[:3], 30).all() and not close(steps[allowed], MASKED_RGBA[:3]).any()
    assert "grey = masked" in pipeline.plots["weights"].titleLabel.text


def test_per_row_scale_makes_every_rows_largest_weight_the_top_colour(masked_window, qtbot):
    window = masked_window
    window.session_model.update(color_scale="row")
    heatmap, result = window.views["heatmap"], window.results.result
    weights = window.results.weights()
    n = weights.shape[0]
    colours = cell_colours(heatmap.canvas, heatmap.plot, n, n)
    top_cells = colours[np.arange(n), weights.argmax(axis=1)]
    assert close(top_cells, TOP, 20).all(), top_cells
    assert heatmap.plot.colorbar.getAxis("left").labelText == "weight / row max"
    assert "colour: per row" in window.files.caption()
    # on the 0–1 scale most rows' largest weight is below the top colour
    window.session_model.update(color_scale="unit")
    colours = cell_colours(heatmap.canvas, heatmap.plot, n, n)
    assert not close(colours[np.arange(n), weights.argmax(axis=1)], TOP, 20).all()
    assert result is window.results.result, "a colour change redraws; it does not recompute"


def test_log_and_auto_scales_change_the_picture_and_say_so(masked_window):
    window = masked_window
    heatmap = window.views["heatmap"]
    n = len(window.results.result.query_tokens)
    pictures = {}
    for scale, title in (("unit", "weight (0–1)"), ("auto", "weight (0 to max)"), ("log", "log₁₀ weight")):
        window.session_model.update(color_scale=scale)
        pictures[scale] = cell_colours(heatmap.canvas, heatmap.plot, n, n)
        assert heatmap.plot.colorbar.getAxis("left").labelText == title
    allowed = window.results.result.mask
    # log lifts small weights off the bottom colour; auto stretches the largest weight to the top colour
    small = allowed & (window.results.weights() < 0.05)
    assert close(pictures["unit"][small], BOTTOM, 60).mean() > close(pictures["log"][small], BOTTOM, 60).mean()
    assert close(pictures["auto"][allowed], TOP, 20).any()
    assert "colour: log₁₀" in window.files.caption()


def test_hiding_special_tokens_drops_their_column_and_renormalises(make_window, qtbot):
    window = make_window(Session(backend="numpy", hide_special=True, color_scale="unit"))
    heatmap, result = window.views["heatmap"], window.results.result
    assert result.query_tokens[0] == "[CLS]" and result.query_tokens[-1] == "[SEP]"
    plot = heatmap.plot
    assert plot.col_labels == result.key_tokens[1:-1] and plot.row_labels == result.query_tokens[1:-1]
    np.testing.assert_allclose(plot.hover_values.sum(axis=1), 1.0, rtol=1e-5)
    n = len(plot.col_labels)
    assert plot.image.image.shape == (n, n)
    colours = cell_colours(heatmap.canvas, plot, n, n)
    expected = np.array(VIRIDIS.map(np.clip(plot.hover_values, 0, 1).ravel(), mode="byte"))[:, :3]
    assert close(colours.reshape(-1, 3), expected, 24).mean() > 0.95  # the drawn colours are the renormalised weights
    assert "special tokens hidden" in plot.titleLabel.text and "special tokens hidden" in window.files.caption()
    window.session_model.update(hide_special=False)
    assert plot.col_labels[0] == "[CLS]"


def test_colour_settings_are_saved_with_the_session(make_window, tmp_path):
    window = make_window()
    window.session_model.update(color_scale="log", hide_special=True)
    assert window.files.save_to(tmp_path / "c.attnsession")
    loaded = Session.load(tmp_path / "c.attnsession")
    assert (loaded.color_scale, loaded.hide_special) == ("log", True)


def test_the_controls_combine_mask_parts_and_set_the_colour(make_window, qtbot):
    window = make_window()
    box = window.controls.mask_colour
    box.mask_parts["causal"].setChecked(True)
    box.mask_parts["window"].setChecked(True)
    assert window.session_model.session.mask == MaskSpec(("causal", "window"), width=2)
    wait_for_result(qtbot, window, lambda r: r.session.mask.kinds == ("causal", "window"))
    box.color_scale.setCurrentIndex(box.color_scale.findData("row"))
    box.color_scale.activated.emit(box.color_scale.currentIndex())
    box.hide_special.setChecked(True)
    assert (window.session_model.session.color_scale, window.session_model.session.hide_special) == ("row", True)
    window.session_model.update(mask=MaskSpec("padding"))  # the boxes follow the session
    assert [k for k, b in box.mask_parts.items() if b.isChecked()] == ["padding"] and box.pad_to.isEnabled()


def test_cli_export_uses_and_names_the_mask_parts_and_colour_scale(tmp_path):
    out = tmp_path / "fig.svg"
    done = run_cli("export", "The cat sat on the mat.", "--mask", "causal+window:1", "--color-scale", "log",
                   "--hide-special", "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    svg = out.read_text(encoding="utf-8")
    assert "mask: causal + sliding window ±1" in svg
    assert "colour: log₁₀, special tokens hidden" in svg
    assert "[CLS]" not in svg  # the hidden tokens are not labelled either


def test_masked_cells_stay_grey_edge_to_edge_in_an_exported_png(masked_window, tmp_path):
    """The grey lines up with the cells in the export too: no sliver of the colour map's 0 at a cell's edge."""
    heatmap, result = masked_window.views["heatmap"], masked_window.results.result
    canvas = heatmap.export_target()
    path = export_view(canvas, tmp_path / "masked.png", scale=2, caption=None)
    image = QImage(str(path)).convertToFormat(QImage.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    rgb = pixels[:, : image.width(), 2::-1].astype(int)
    origin = canvas.mapToScene(canvas.viewport().rect()).boundingRect().topLeft()
    box = heatmap.plot.getViewBox()
    sampled, where = [], []
    for r, c in zip(*np.nonzero(~result.mask), strict=True):
        edge = [0.06, 0.2, 0.5, 0.8, 0.94]  # points across the cell each way, near its edges too
        for fx, fy in [(0.5, f) for f in edge] + [(f, 0.5) for f in edge]:
            if (r == 0 and fy < 0.5) or (c == 0 and fx < 0.5):
                continue  # the axes' tick marks reach into the first row and column
            scene = box.mapViewToScene(QPointF(c + fx, r + fy))
            sampled.append(rgb[int((scene.y() - origin.y()) * 2), int((scene.x() - origin.x()) * 2)])
            where.append((int(r), int(c), fx, fy))
    grey = close(np.array(sampled), MASKED_RGBA[:3])
    assert grey.all(), (f"{(~grey).sum()} of {grey.size} points inside masked cells are not grey: "
                        f"{np.array(sampled)[~grey][:6].tolist()} at {np.array(where)[~grey][:6].tolist()}")
