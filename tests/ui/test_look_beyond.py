"""The analysis views at 1024x700 in both themes, with MiniLM and SmolLM2, with text B set: nothing clipped
(a canvas wider than the tab scrolls sideways), every text readable."""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.session import Session
from attnstudio.ui.theme import apply_theme
from attnstudio.ui.views import VIEW_CLASSES
from attnstudio.ui.views.compare import PRESETS
from tests.ui.conftest import build_view
from tests.ui.looks import clipped_panels, low_contrast, pixels, scroll_areas_needing, view_text
from tests.ui.test_look_geometry import SMALL

BEYOND_VIEWS = ("heads", "model", "pipeline", "multi_lines", "why", "compare")


@pytest.fixture(autouse=True)
def light_afterwards():
    """The theme is global (palette, pyqtgraph defaults): the next tests start in the light one again."""
    yield
    apply_theme("light")


@pytest.mark.parametrize("model", ["minilm", "smollm2"])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_analysis_views_fit_1024x700_in_both_themes(make_window, qtbot, model, theme):
    text_a, text_b, word = PRESETS["bank: account / river"]
    window = make_window(Session(model=model, text=text_a, compare_text=text_b, compare_word=word, backend="numpy",
                                 cell=(3, 1)))
    qtbot.waitUntil(lambda: window.results.result.model_name == model and window.results.result.compare is not None,
                    timeout=120_000)
    if window.theme != theme:
        window.toggle_theme()
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SMALL)
    problems = []
    for key in BEYOND_VIEWS:
        window.session_model.update(view=key)
        qtbot.wait(60)
        view = window.views[key]
        problems += clipped_panels(view, window)
        problems += low_contrast(view_text(view, f"{theme}/{model}/{key}"))
    assert problems == []
    compare = window.views["compare"]
    window.session_model.update(view="compare")
    qtbot.wait(30)
    wide = compare.canvas.minimumWidth() > compare.canvas.parentWidget().width()
    assert not wide or scroll_areas_needing(compare, "horizontal"), "a canvas wider than the tab scrolls sideways"
    assert compare.row_a.tokens and compare.row_b.tokens and compare.cosines is not None


@pytest.mark.parametrize("key", BEYOND_VIEWS + ("next_token",))
def test_the_synthetic_model_draws_every_analysis_view(qtbot, key):
    text_a, text_b, word = PRESETS["trophy: big / small"]
    session = Session(model="synthetic", text=text_a, compare_text=text_b, compare_word=word, backend="numpy",
                      ablation=Ablation(((0, 1),)), cell=(2, 1))
    view, _, _, result = build_view(qtbot, VIEW_CLASSES[key], session)
    assert result.model_name == "synthetic" and result.compare is not None
    assert clipped_panels(view, view) == []
    image = pixels(view)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, "the view draws a picture"
    if key == "compare":
        assert view.followed[0] == "it" and view.cosines is not None and view.row_b.tokens
    if key == "model":
        assert view.canvas.shape() == (result.num_layers, result.heads)
