"""Every text item of every view is readable (WCAG contrast >= 4.5:1) in both themes and across a toggle.

Colours are read from the objects (axis pens, LabelItem html, QLabel palettes, the Lines view's paint
colours); a few pixel checks back them up where a colour is not text (the mask panel).
"""
from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from attnstudio.core.profiling import ProfileConfig, run_profile
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.theme import THEMES, apply_theme
from attnstudio.ui.views import VIEW_CLASSES
from tests.ui.looks import contrast_ratio, low_contrast, pixels, relative_luminance, view_text

RESULT_VIEWS = [key for key in VIEW_CLASSES if key != "profiler"]


@pytest.fixture(scope="module")
def result():
    computed = Engine().compute(Session(backend="numpy"))
    computed.precompute_views()
    return computed


@pytest.fixture(scope="module")
def profile():
    config = ProfileConfig(lengths=(16, 32), kernels=("naive", "tiled"), heads=1, d_k=8, repeats=1).validate()
    return run_profile(config).to_json_dict()


@pytest.fixture
def themed(qapp):
    """Set a theme for the test; the light theme comes back afterwards for the other tests."""
    def themed(name, root=None):
        apply_theme(name, root)
        qapp.processEvents()  # widgets take the new application palette from the event queue

    yield themed
    apply_theme("light")


def build_view(qtbot, key, result, profile):
    session = SessionModel(Session(backend="numpy", profile=profile))
    results = ResultModel(session)
    view = VIEW_CLASSES[key](session) if key == "profiler" else VIEW_CLASSES[key](session, results)
    qtbot.addWidget(view)
    view.resize(900, 650)
    view.show()
    qtbot.waitExposed(view)
    if key != "profiler":
        results.set_result(result)
    qtbot.wait(10)
    return view


def readable(view, where):
    samples = view_text(view, where)
    assert samples, f"{where}: no text found: the check would pass on anything"
    return low_contrast(samples)


@pytest.mark.parametrize("theme", sorted(THEMES))
@pytest.mark.parametrize("key", list(VIEW_CLASSES))
def test_text_is_readable_in_each_theme(qtbot, themed, result, profile, theme, key):
    themed(theme)
    view = build_view(qtbot, key, result, profile)
    assert readable(view, f"{theme}/{key}") == []


@pytest.mark.parametrize("key", list(VIEW_CLASSES))
def test_text_follows_a_theme_toggle(qtbot, themed, result, profile, key):
    """Views built in one theme and switched to the other: every title, legend and label follows."""
    view = build_view(qtbot, key, result, profile)
    for theme in ("dark", "light", "dark"):
        themed(theme, view)
        if key != "profiler":
            view.refresh()
        assert readable(view, f"light→{theme}/{key}") == []


def test_the_whole_window_follows_the_theme(make_window, qtbot):
    window = make_window(Session(backend="numpy"))
    window.views["profiler"].session_model.update(profile=run_profile(ProfileConfig(
        lengths=(16, 32), kernels=("naive",), heads=1, d_k=8, repeats=1).validate()).to_json_dict())
    for _ in range(2):
        window.toggle_theme()
        problems = []
        for key, view in window.views.items():
            window.session_model.update(view=key)
            qtbot.wait(20)
            problems += readable(view, f"{window.theme}/{key}")
        assert problems == []
        dock = low_contrast(view_text(window.controls, f"{window.theme}/controls"))
        assert dock == []


def test_the_dark_mask_panel_is_not_glaring(qtbot, themed, result, profile):
    """The pipeline's mask step follows the theme: on a dark canvas its allowed cells are not white."""
    themed("dark")
    view = build_view(qtbot, "pipeline", result, profile)
    plot = view.plots["mask"]
    rect = view.canvas.mapFromScene(plot.image.sceneBoundingRect()).boundingRect()
    area = pixels(view.canvas)[rect.top() + 3:rect.bottom() - 3, rect.left() + 3:rect.right() - 3]
    assert area.size, "the mask panel is on screen"
    assert area.mean(axis=(0, 1)).max() < 200, "allowed cells are a calm colour, not white"
    background = THEMES["dark"]["background"]
    allowed = area.reshape(-1, 3).max(axis=0)
    assert (allowed.astype(int) - background).max() > 40, "allowed cells still stand out from the canvas"
    assert "allowed" in plot.titleLabel.text


def test_luminance_reference_values():
    """The WCAG formula itself: black on white is 21:1, mid grey on white is about 4.5:1."""
    assert contrast_ratio(QColor("black"), QColor("white")) == pytest.approx(21.0)
    assert contrast_ratio(QColor(118, 118, 118), QColor("white")) == pytest.approx(4.54, abs=0.01)
    assert relative_luminance(QColor("white")) == pytest.approx(1.0)
