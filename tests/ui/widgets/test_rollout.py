"""The rollout view alone with its models: its matrix is the result's rollout; cross-attention explains itself."""
from __future__ import annotations

import dataclasses

import numpy as np

from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.views.rollout import RolloutView
from tests.ui.conftest import build_view
from tests.ui.widgets.drawn import cell_rgb, close_colour, colormap_rgb


def test_rollout_is_drawn_and_a_cross_attention_result_says_why_not(qtbot):
    view, session_model, results, result = build_view(qtbot, RolloutView, Session(backend="numpy"))
    rollout = result.rollout
    low, high = view.plot.image.levels
    brightest = np.unravel_index(int(np.argmax(rollout)), rollout.shape)
    palest = np.unravel_index(int(np.argmin(rollout)), rollout.shape)
    for cell in (brightest, palest):
        expected = colormap_rgb(view.plot.colormap, (float(rollout[cell]) - low) / (high - low))
        assert close_colour(cell_rgb(view.canvas, view.plot, *cell), expected)
    assert f"over {result.num_layers} layer(s)" in view.note.text()

    session_model.update(pair_text="A second sentence for the keys.")
    results.set_result(Engine().compute(session_model.session))  # what the compute worker would publish
    qtbot.waitUntil(lambda: "not defined for cross-attention" in view.note.text())
    assert not view.canvas.isVisible()

    session_model.update(pair_text="")
    results.set_result(Engine().compute(dataclasses.replace(session_model.session)))
    qtbot.waitUntil(view.canvas.isVisible)


def test_rollout_follows_the_colour_scale_and_names_it(qtbot):
    """The session's colour scale, as in the heatmap and beside the flow: 0–1 by default (it was fitted to the
    data without a label, so MiniLM's [CLS] column read as full yellow at 0.6), auto = 0 to the largest share."""
    view, session_model, results, result = build_view(qtbot, RolloutView, Session(backend="numpy"))
    rollout = result.rollout
    brightest = np.unravel_index(int(np.argmax(rollout)), rollout.shape)
    assert 0.3 < rollout[brightest] < 0.95  # MiniLM's [CLS] column: a 0–1 scale and a fitted one differ here
    for scale, levels, title in (("unit", (0.0, 1.0), "share (0–1)"),
                                 ("auto", (0.0, float(rollout.max())), "share (0 to max)")):
        session_model.update(color_scale=scale)
        qtbot.waitUntil(lambda levels=levels: np.allclose(view.plot.image.levels, levels, atol=1e-6))
        assert view.plot.colorbar.getAxis("left").labelText == title
        expected = colormap_rgb(view.plot.colormap, float(rollout[brightest]) / levels[1])
        assert close_colour(cell_rgb(view.canvas, view.plot, *brightest), expected), scale
