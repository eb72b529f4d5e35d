"""The position-bias view alone with its models: a T5 head's bias drawn along diagonals; a head change redraws."""
from __future__ import annotations

import numpy as np

from attnstudio.ui.views.position_bias import PositionBiasView
from tests.ui.conftest import build_view
from tests.ui.test_decoder_ui import cell_pixel
from tests.ui.test_main_window import pixels
from tests.ui.test_t5_ui import t5_session


def diagonal_colours_agree(view, image, distance: int) -> bool:
    colours = [cell_pixel(view, image, row, row + distance) for row in range(4, 9)]
    return all(np.abs(colour - colours[0]).max() <= 2 for colour in colours)


def test_the_bias_of_the_chosen_head_is_drawn_and_follows_a_head_change(qtbot):
    view, session_model, results, result = build_view(qtbot, PositionBiasView,
                                                      t5_session(attention_kind="encoder", head=0))
    qtbot.waitUntil(lambda: view.plot.matrix is not None and view.plot.matrix.shape == (17, 17))
    np.testing.assert_array_equal(view.plot.matrix, result.position_bias[0])
    assert "head 1/4" in view.plot.titleLabel.text
    image = pixels(view.canvas)
    assert all(diagonal_colours_agree(view, image, distance) for distance in (-2, 0, 3))

    session_model.update(head=3)  # the view follows the session model alone: no window, no compute
    qtbot.waitUntil(lambda: "head 4/4" in view.plot.titleLabel.text)
    bias = result.position_bias[3]
    np.testing.assert_array_equal(view.plot.matrix, bias)
    image = pixels(view.canvas)
    low, high = np.unravel_index(np.argmin(bias), bias.shape), np.unravel_index(np.argmax(bias), bias.shape)
    assert np.abs(cell_pixel(view, image, *low) - cell_pixel(view, image, *high)).max() > 80
