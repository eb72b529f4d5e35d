"""The profiler view alone with its session model: saved results are drawn; a sweep runs and is saved."""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.profiling import ProfileConfig, ProfilePoint, ProfileResult
from attnstudio.session import Session
from attnstudio.ui.profile_controller import ProfileController
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.profiler import ProfilerView

CONFIG = ProfileConfig(lengths=(64, 128, 256), kernels=("naive",), heads=1, d_k=8, repeats=1)
POINTS = [ProfilePoint(n, "naive", "numpy", "ok", 1e-6 * n * n, 8 * n * n, 8 * n * n) for n in (64, 128, 256)]


@pytest.fixture
def profiler(qtbot):
    session_model = SessionModel(Session(backend="numpy"))
    view = ProfilerView(session_model)
    qtbot.addWidget(view)
    view.resize(1024, 700)
    view.show()
    qtbot.waitExposed(view)
    return view, session_model


def test_results_set_in_the_session_are_plotted_and_tabled(profiler, qtbot):
    view, session_model = profiler
    assert view.plots_stack.currentWidget() is view.empty_note, "no sweep yet: a sentence, not empty axes"
    session_model.update(profile=ProfileResult(CONFIG, POINTS).to_json_dict())
    assert view.plots_stack.currentWidget() is view.canvas
    assert view.table.rowCount() == 3
    assert [view.table.item(row, 3).text() for row in range(3)] == [f"{p.median_s * 1000:.3f}" for p in POINTS]
    curve = next(item for item in view.time_plot.listDataItems() if item.name().startswith("naive/numpy"))
    assert curve.name() == "naive/numpy (n^2.00)"
    np.testing.assert_allclose(curve.xData, [64, 128, 256])
    np.testing.assert_allclose(curve.yData, [p.median_s * 1000 for p in POINTS])  # drawn in ms
    assert view.time_plot.getAxis("left").labelText == "median time (ms)"


def test_a_sweep_runs_in_a_child_process_and_lands_in_the_session(profiler, qtbot):
    view, session_model = profiler
    view.lengths.setText("32,64")
    view.heads.setValue(1)
    view.d_k.setValue(8)
    view.repeats.setValue(1)
    for name, box in view.kernel_boxes.items():
        box.setChecked(name == "tiled")
    with qtbot.waitSignal(view.sweep_finished, timeout=120_000) as finished:
        assert view.start()
        assert not view.run_button.isEnabled() and view.cancel_button.isEnabled()
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()
    assert [p["n"] for p in session_model.session.profile["points"]] == [32, 64]
    assert finished.args[0].to_json_dict() == session_model.session.profile
    assert view.progress.value() == view.progress.maximum() == 2
    assert view.status.text().startswith("Done.")


def test_a_child_that_fails_is_reported_with_its_last_error_line(qtbot, monkeypatch):
    controller = ProfileController()
    monkeypatch.setattr("attnstudio.ui.profile_controller.profile_arguments",
                        lambda config: ["profile", "--kernels", "nonsense"])
    with qtbot.waitSignal(controller.failed, timeout=60_000) as failed:
        assert controller.start(CONFIG)
    reason, partial = failed.args
    assert "kernels" in reason and partial.points == []
    assert not controller.busy
