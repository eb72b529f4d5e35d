"""The pipeline view alone with its models: a new head repaints the weights panel and rewrites the formula."""
from __future__ import annotations

import numpy as np

from attnstudio.session import Session
from attnstudio.ui.views.pipeline import PipelineView
from tests.ui.conftest import build_view
from tests.ui.widgets.drawn import cell_rgb, close_colour, colormap_rgb


def test_choosing_a_head_repaints_the_weights_and_rewrites_the_formula(qtbot):
    view, session_model, results, result = build_view(qtbot, PipelineView, Session(backend="numpy", layer=2, head=0))
    assert "layer 3, head 1" in view.formula.text() and f"d_k = {result.d_k}" in view.formula.text()
    before, after = result.attentions()[2, 0], result.attentions()[2, 9]
    row, col = np.unravel_index(int(np.argmax(np.abs(before - after))), before.shape)
    weights = view.plots["weights"]
    view.scroll.ensureWidgetVisible(view.canvas)
    assert close_colour(cell_rgb(view.canvas, weights, row, col), colormap_rgb(weights.colormap, before[row, col]))

    session_model.update(head=9, temperature=0.5)  # temperature: drawn from the result, not the edited session
    qtbot.waitUntil(lambda: "layer 3, head 10" in view.formula.text())
    assert close_colour(cell_rgb(view.canvas, weights, row, col), colormap_rgb(weights.colormap, after[row, col]))
    assert abs(float(before[row, col]) - float(after[row, col])) > 0.2, "the check would pass on an unchanged picture"
    assert "temperature 1" in view.formula.text(), "the formula describes the result on screen (computed at 1)"
    np.testing.assert_allclose(view.plots["scores"].matrix, result.step(2, "scores")[9], atol=1e-6)
