"""Typing into a decoder computes what the tab on screen shows, nothing else; every tab is right once shown.

Each key press extends the last forward pass (the prefix cache) and publishes the result; hidden tabs catch up
when shown. These tests type into the app with a tiny Llama checkpoint and compare what each tab reads and
draws with a fresh compute of the same text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QTextCursor

from attnstudio import engine as engine_module
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.main_window import VIEWS
from attnstudio.ui.views.next_token import shown
from tests.ui.conftest import wait_for_result
from tests.ui.looks import pixels

TINY_LLAMA = str(Path(__file__).resolve().parent.parent / "data" / "tiny-llama")
TEXT = "The cat sat on the mat because it was tired."


@pytest.fixture
def lens_calls(monkeypatch):
    """The positions every result's logit lens was computed at (the engine's lens wrapped with a counter)."""
    calls: list[int] = []
    make_lens = engine_module._lens_for

    def counting(*args):
        lens = make_lens(*args)
        if lens is None:
            return None

        def counted(position: int):
            calls.append(position)
            return lens(position)
        return counted
    monkeypatch.setattr(engine_module, "_lens_for", counting)
    return calls


def type_at_end(window, qtbot, characters: str) -> None:
    """Type each character at the end of the text box, waiting for the result of each key press."""
    editor = window.controls.text
    editor.setFocus()
    tokenizer = window.controller.engine.model(window.session_model.session).tokenizer
    for character in characters:
        cursor = editor.textCursor()
        cursor.movePosition(QTextCursor.End)
        editor.setTextCursor(cursor)
        qtbot.keyClick(editor, character)
        expected = tokenizer.encode(editor.toPlainText()).tokens
        wait_for_result(qtbot, window, lambda result, expected=expected: result.query_tokens == expected)


def test_the_logit_lens_is_computed_only_while_its_tab_is_shown(make_window, qtbot, lens_calls):
    window = make_window(Session(model=TINY_LLAMA, backend="numpy", text=TEXT))
    type_at_end(window, qtbot, " The dog")
    result = window.results.result
    assert window.controller.engine._prefix.reused > 0  # the key presses extended the last pass
    assert lens_calls == []  # the heatmap is on screen: no unembedding of every layer per key press
    assert not result.has_summary("entropy") and not result.has_summary("roles")  # nor the heads grid's summaries

    window.session_model.update(view="logit_lens")
    qtbot.waitUntil(lambda: len(lens_calls) == 1)
    position = len(result.query_tokens) - 1
    assert lens_calls == [position]  # the last token's lens, once
    fresh = Engine().compute(result.session)  # a full forward pass of the same text
    expected = fresh.logit_lens(position)
    del lens_calls[1:]  # (the fresh result's lens counts too)
    view = window.views["logit_lens"]
    drawn = [label.textItem.toPlainText() for label in view.labels if label.isVisible()]
    assert drawn == [f"{shown(top.label)}  {top.probability:.0%}" for top in expected]
    np.testing.assert_allclose(view.bars.opts["width"], [top.probability * 100 for top in expected], atol=1e-3)

    type_at_end(window, qtbot, "s")  # shown: each key press reads the lens of the new text, once
    assert lens_calls[1:] == [len(window.results.result.query_tokens) - 1]
    window.session_model.update(view="heatmap")
    type_at_end(window, qtbot, " ran")
    assert len(lens_calls) == 2  # hidden again: not computed


def test_every_tab_shows_the_typed_text_like_a_fresh_compute(make_window, qtbot):
    window = make_window(Session(model=TINY_LLAMA, backend="numpy", text=TEXT))
    type_at_end(window, qtbot, " It sl")
    result = window.results.result
    assert window.controller.engine._prefix.reused > 0
    fresh = Engine().compute(result.session)
    np.testing.assert_allclose(result.attentions(), fresh.attentions(), rtol=0, atol=1e-6)
    for layer in (0, result.num_layers - 1):
        for step in ("queries", "keys", "values", "context"):  # queries and context were kept in row parts
            expected = fresh.step(layer, step)
            np.testing.assert_allclose(result.step(layer, step), expected, rtol=0,
                                       atol=1e-6 * max(1.0, float(np.abs(expected).max())), err_msg=step)
    for name in VIEWS:
        key = name[0]
        window.session_model.update(view=key)
        view = window.views[key]
        if hasattr(view, "_stale"):
            qtbot.waitUntil(lambda view=view: not view._stale, timeout=20_000)
        image = pixels(view)
        assert image.reshape(-1, image.shape[-1]).std(axis=0).max() > 5, f"the {key} tab draws nothing"
    # what the tabs read, computed lazily from the typed result, equals the fresh compute's
    np.testing.assert_allclose(result.head_entropy, fresh.head_entropy, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.rollout, fresh.rollout, rtol=0, atol=1e-5)
    for role, scores in fresh.head_roles.items():
        np.testing.assert_allclose(result.head_roles[role], scores, rtol=0, atol=1e-5, err_msg=role)
    assert [top.token_id for top in result.next_tokens] == [top.token_id for top in fresh.next_tokens]
    heatmap = window.views["heatmap"]
    window.session_model.update(view="heatmap", layer=1, head=2)
    qtbot.waitUntil(lambda: "layer 2/" in heatmap.plot.titleLabel.text)
    drawn = np.asarray(heatmap.plot.image.image)  # the weights the heatmap's image item holds (NaN: masked)
    np.testing.assert_array_equal(np.isnan(drawn), ~fresh.mask)
    np.testing.assert_allclose(np.nan_to_num(drawn), fresh.attentions()[1, 2], rtol=0, atol=1e-6)
