"""The heads grid alone with its models: a new layer repaints every panel with that layer's heads."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from attnstudio.session import Session
from attnstudio.ui.views.heads import HeadsView
from tests.ui.conftest import build_view
from tests.ui.looks import pixels
from tests.ui.widgets.drawn import cell_rgb, close_colour, colormap_rgb


def test_choosing_a_layer_repaints_every_head_and_moves_the_highlight(qtbot):
    view, session_model, results, result = build_view(qtbot, HeadsView, Session(backend="numpy", layer=0, head=1))
    assert [plot.titleLabel.text.split(" · ")[0] for plot in view.head_plots[:3]] == ["L1·H1", "L1·H2", "L1·H3"]
    before, after = result.attentions()[0, 5], result.attentions()[4, 5]
    row, col = np.unravel_index(int(np.argmax(np.abs(before - after))), before.shape)
    viridis = view.head_images[5].getColorMap()
    assert close_colour(cell_rgb(view.grid, view.head_plots[5], row, col), colormap_rgb(viridis, before[row, col]))

    session_model.update(layer=4, head=5)
    qtbot.waitUntil(lambda: view.head_plots[0].titleLabel.text.startswith("L5·H1"))
    image = pixels(view.grid)
    expected = colormap_rgb(viridis, after[row, col])
    assert close_colour(cell_rgb(view.grid, view.head_plots[5], row, col, image), expected)
    assert abs(float(before[row, col]) - float(after[row, col])) > 0.2, "the check would pass on an unchanged picture"
    assert "layer 5/6 · head 6 selected" in view.caption.text()
    assert view.head_plots[5].getViewBox().border.color() != view.head_plots[1].getViewBox().border.color()
    entropy = result.head_entropy
    assert f"H={entropy[4, 5]:.2f}" in view.head_plots[5].titleLabel.text


def test_clicking_a_panel_focuses_its_head_in_the_session(qtbot):
    view, session_model, results, result = build_view(qtbot, HeadsView, Session(backend="numpy", layer=2, head=0))
    centre = view.grid.mapFromScene(view.head_plots[7].sceneBoundingRect().center())
    QTest.mouseClick(view.grid.viewport(), Qt.LeftButton, pos=centre)
    qtbot.waitUntil(lambda: session_model.session.head == 7)
    qtbot.waitUntil(lambda: "head 8 selected" in view.caption.text())
