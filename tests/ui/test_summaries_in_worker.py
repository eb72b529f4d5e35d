"""Switching to a view that reads whole-model summaries (entropies, roles, rollout) of a large result: the worker
computes them and the view draws once they are ready; the GUI thread never computes them (no frozen window)."""
from __future__ import annotations

import threading

from attnstudio import engine
from attnstudio.session import Session
from attnstudio.ui.views.base import GUI_SUMMARY_CELLS
from tests.ui.conftest import wait_for_result


def test_the_heads_view_of_a_large_decoder_result_is_prepared_by_the_worker(make_window, qtbot, monkeypatch):
    text = " ".join(["The cat sat on the mat because it was tired."] * 14)  # about 150 tokens
    window = make_window(Session(text=text, model="smollm2", backend="numpy"))
    wait_for_result(qtbot, window, lambda r: r.session.text == text, timeout=120_000)
    result = window.results.result
    assert result.weight_cells() > GUI_SUMMARY_CELLS
    assert result.missing_summaries("heads")  # the heatmap on screen needed none of them
    heads = window.views["heads"]
    computed_on_gui_thread = []
    original = engine.head_entropy

    def watched(attentions):  # where the entropies are computed: True for the GUI thread
        computed_on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return original(attentions)

    monkeypatch.setattr(engine, "head_entropy", watched)  # what ComputeResult.head_entropy calls
    window.session_model.update(view="heads")
    # first visit, nothing drawn yet: a sheet says what the view waits for instead of an empty grid
    assert heads.waiting.isVisible()
    n = len(result.query_tokens)
    assert heads.waiting.text().startswith(f"Computing what this view draws from all 30 × 9 heads of {n} tokens")
    sheet = heads.grab().toImage()
    band = [sheet.pixelColor(x, sheet.height() // 2).lightness() for x in range(sheet.width())]
    assert min(band) < 120 < max(band), "the sheet's words are drawn across the middle of the view"
    qtbot.waitUntil(lambda: not result.missing_summaries("heads"), timeout=120_000)
    qtbot.waitUntil(lambda: not heads._stale and bool(heads.grid_heads), timeout=30_000)
    assert not heads.waiting.isVisible()  # the grid is drawn: the sheet is gone
    assert computed_on_gui_thread == [False]  # once, in the worker
    assert window.results.result is result  # the same result, published again with its summaries
    assert f"head {window.results.shown.head + 1} selected" in heads.caption.text()


def test_a_small_result_is_summarised_on_the_spot(make_window, qtbot):
    window = make_window(Session(text="The cat sat on the mat.", backend="numpy"))
    result = window.results.result
    assert result.weight_cells() < GUI_SUMMARY_CELLS
    window.session_model.update(view="heads")
    assert not result.missing_summaries("heads") and not window.views["heads"]._stale
