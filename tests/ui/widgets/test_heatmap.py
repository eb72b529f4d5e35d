"""The heatmap alone with its models: a new head or colour scale repaints the cells and the title."""
from __future__ import annotations

import numpy as np

from attnstudio.session import Session
from attnstudio.ui.views.heatmap import HeatmapView
from tests.ui.conftest import build_view
from tests.ui.widgets.drawn import cell_rgb, close_colour, colormap_rgb


def contrasting_cell(weights_a: np.ndarray, weights_b: np.ndarray) -> tuple[int, int]:
    """The cell whose weight differs most between two heads (n_q, n_k each)."""
    return np.unravel_index(int(np.argmax(np.abs(weights_a - weights_b))), weights_a.shape)


def test_choosing_a_head_repaints_the_cells_in_its_weights(qtbot):
    view, session_model, results, result = build_view(qtbot, HeatmapView, Session(backend="numpy", layer=1, head=0))
    before, after = result.attentions()[1, 0], result.attentions()[1, 7]
    row, col = contrasting_cell(before, after)
    colormap = view.plot.colormap
    assert close_colour(cell_rgb(view.canvas, view.plot, row, col), colormap_rgb(colormap, before[row, col]))
    assert "layer 2/6 · head 1/12" in view.plot.titleLabel.text

    session_model.update(head=7)
    qtbot.waitUntil(lambda: "head 8/12" in view.plot.titleLabel.text)
    assert close_colour(cell_rgb(view.canvas, view.plot, row, col), colormap_rgb(colormap, after[row, col]))
    assert abs(float(before[row, col]) - float(after[row, col])) > 0.2, "the check would pass on an unchanged picture"


def test_per_row_colour_scale_makes_each_rows_largest_weight_the_top_colour(qtbot):
    view, session_model, results, result = build_view(qtbot, HeatmapView, Session(backend="numpy", layer=0, head=0))
    row_peaks = result.attentions()[0].max(axis=-1)  # (heads, n_q)
    head, row = np.unravel_index(int(np.argmin(row_peaks)), row_peaks.shape)  # a row far below weight 1
    col = int(np.argmax(result.attentions()[0, head, row]))
    session_model.update(head=int(head))
    qtbot.waitUntil(lambda: f"head {head + 1}/12" in view.plot.titleLabel.text)
    top = colormap_rgb(view.plot.colormap, 1.0)
    assert row_peaks[head, row] < 0.6
    assert not close_colour(cell_rgb(view.canvas, view.plot, row, col), top, 30)

    session_model.update(color_scale="row")
    qtbot.waitUntil(lambda: close_colour(cell_rgb(view.canvas, view.plot, row, col), top))
    assert view.plot.colorbar.getAxis("left").labelText == "weight / row max"
