"""The Compare view: A and B at the same head, B − A where tokens align, one word through the layers."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import cosine_similarity, layer_cosines
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui import theme
from attnstudio.ui.views.compare import PRESETS, CompareView, shared_words
from tests.ui.conftest import build_view
from tests.ui.looks import pixels
from tests.ui.widgets.drawn import cell_rgb, close_colour, colormap_rgb

A, B, _ = PRESETS["trophy: big / small"]


def build(qtbot, session: Session):
    return build_view(qtbot, CompareView, session)


def test_difference_is_b_minus_a_and_drawn_diverging(qtbot):
    view, _, _, result = build(qtbot, Session(text=A, compare_text=B, layer=3, head=2, backend="numpy"))
    weights_a, weights_b = result.attentions()[3, 2], result.compare.attentions()[3, 2]
    assert len(result.query_tokens) == len(result.compare.query_tokens)
    np.testing.assert_allclose(view.difference, weights_b - weights_a, atol=1e-6)
    assert "big→small" in view.plot_diff.row_labels
    low, high = view.plot_diff.image.levels
    assert low == pytest.approx(-high) and high == pytest.approx(np.abs(weights_b - weights_a).max())
    np.testing.assert_array_equal(view.plot_a.matrix, weights_a)
    assert "layer 4 · head 3" in view.plot_a.titleLabel.text and "layer 4 · head 3" in view.plot_b.titleLabel.text
    # the centre of the diverging map (no change) is pale; the largest change is strongly coloured
    image = pixels(view.canvas)
    rect = view.canvas.mapFromScene(view.plot_diff.image.sceneBoundingRect()).boundingRect()
    area = image[rect.top() + 2:rect.bottom() - 2, rect.left() + 2:rect.right() - 2].reshape(-1, 3).astype(int)
    assert (area.min(axis=1) > 200).mean() > 0.5, "most cells barely change: near-white"
    assert (area.max(axis=1) - area.min(axis=1) > 120).any(), "the biggest change stands out in colour"


def test_same_word_cosines_per_layer_and_sentence_similarity(qtbot):
    bank_a, bank_b, word = PRESETS["bank: account / river"]
    view, model, _, result = build(qtbot, Session(text=bank_a, compare_text=bank_b, backend="numpy"))
    assert shared_words(result.query_tokens, result.compare.query_tokens) == ["the", "bank"]
    assert view.word.currentText() == "the"  # no word chosen: the first one both texts have
    model.update(compare_word=word)
    assert view.word.currentText() == "bank"
    i, j = result.query_tokens.index("bank"), result.compare.query_tokens.index("bank")
    expected = layer_cosines(result.forward.hidden_states, i, result.compare.forward.hidden_states, j)
    x, y = view.cosine_curve.getData()
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_array_equal(x, np.arange(7))
    assert f"{expected[-1]:.3f}" in view.cosine_plot.titleLabel.text
    similarity = cosine_similarity(result.sentence_embedding, result.compare.sentence_embedding)
    assert f"{similarity:.4f}" in view.sentence_label.text


def test_ablation_shows_similarity_with_and_without(qtbot):
    bank_a, bank_b, _ = PRESETS["bank: account / river"]
    ablation = Ablation(tuple((0, h) for h in range(12)))
    view, _, _, result = build(qtbot, Session(text=bank_a, compare_text=bank_b, ablation=ablation, backend="numpy"))
    without = cosine_similarity(result.baseline.sentence_embedding, result.baseline.compare.sentence_embedding)
    assert view.similarity_without == pytest.approx(without)
    assert abs(view.similarity - without) > 1e-3
    assert f"{without:.4f} without" in view.sentence_label.text and "zeroed L1·H1" in view.sentence_label.text


def test_preset_and_typing_set_the_session(qtbot):
    view, model, _, _ = build(qtbot, Session(backend="numpy"))
    assert not view.canvas.isVisible() and "second text" in view.note.text()
    view.presets.activated.emit(2)
    session = model.session
    assert (session.text, session.compare_text, session.compare_word) == PRESETS["trophy: big / small"]
    view.text_b.setText("A different sentence.")
    view.text_b.textEdited.emit("A different sentence.")
    qtbot.waitUntil(lambda: model.session.compare_text == "A different sentence.", timeout=2000)


def test_a_head_set_in_the_session_repaints_a_and_b(qtbot):
    view, model, _, result = build(qtbot, Session(text=A, compare_text=B, layer=0, head=0, backend="numpy"))
    model.update(layer=4, head=6)
    qtbot.waitUntil(lambda: "layer 5 · head 7" in view.plot_b.titleLabel.text)
    image = pixels(view.canvas)
    for plot, weights in ((view.plot_a, result.attentions()[4, 6]), (view.plot_b, result.compare.attentions()[4, 6])):
        row, col = np.unravel_index(int(np.argmax(weights)), weights.shape)
        expected = colormap_rgb(plot.colormap, weights[row, col])
        assert close_colour(cell_rgb(view.canvas, plot, row, col, image), expected)
    np.testing.assert_allclose(view.difference[0], (result.compare.attentions()[4, 6] - result.attentions()[4, 6])[0],
                               atol=1e-6)


def publish(model, results):
    """What the worker does after an edit: compute the session and publish the result."""
    result = Engine().compute(model.session)
    result.precompute_views()
    results.set_result(result)


def test_typing_b_keeps_the_followed_token_and_never_jumps(qtbot):
    bank_a, bank_b, _ = PRESETS["bank: account / river"]
    view, model, results, result = build(qtbot, Session(text=bank_a, compare_text=bank_b, backend="numpy"))
    row = result.query_tokens.index("bank")
    view.plot_a.cell_clicked.emit(row, 0)  # the user picks A's 'bank' by clicking its row
    assert (model.session.compare_word, model.session.compare_position) == ("bank", row)
    typed = "We had a picnic on the grassy river bank."
    for end in (len(typed) - 5, len(typed) - 3, len(typed) - 1, len(typed)):  # "... river b", "... ban", "... bank"
        model.update(compare_text=typed[:end])
        publish(model, results)
        qtbot.wait(5)
        word, index_a, index_b = view.followed
        assert (word, index_a) == ("bank", row), f"jumped while typing {typed[:end]!r}"
        assert view.word.currentText() == "bank"
        if "bank" in typed[:end]:
            assert results.result.compare.query_tokens[index_b] == "bank"
            assert view.cosines is not None
        else:
            assert index_b is None and view.cosines is None
            assert "'bank' is not in B (yet)" in view.cosine_plot.titleLabel.text
            assert view.row_a.tokens == results.result.key_tokens, "A's row stays on screen"
    assert model.session.compare_word == "bank"


def test_the_second_of_two_equal_words_stays_the_second_while_a_is_typed(qtbot):
    text_a = "The bank by the bank of the city."
    text_b = "The bank by the bank of the town."
    view, model, results, result = build(qtbot, Session(text=text_a, compare_text=text_b, backend="numpy"))
    second = [i for i, token in enumerate(result.query_tokens) if token == "bank"][1]
    view.plot_a.cell_clicked.emit(second, 0)
    assert view.followed[1] == second and view.followed[2] == second
    assert "its 2nd of 2 in A" in view.note.text()
    model.update(text="Oh, " + text_a)  # two tokens typed before it: the same 'bank' moves two places
    publish(model, results)
    qtbot.wait(5)
    assert view.followed[:2] == ("bank", second + 2)
    qtbot.waitUntil(lambda: model.session.compare_position == second + 2)
    assert view.followed[2] == second  # B's second 'bank', not its first
    model.update(text="Oh, The bank by the river is near the ba")  # A loses the word while being retyped
    publish(model, results)
    qtbot.wait(5)
    assert view.followed[0] == "bank" and view.word.currentText() == "bank"


def test_the_words_attention_rows_are_shown_side_by_side(qtbot):
    bank_a, bank_b, word = PRESETS["bank: account / river"]
    session = Session(text=bank_a, compare_text=bank_b, compare_word=word, layer=2, head=4, backend="numpy")
    view, _, _, result = build(qtbot, session)
    i, j = result.query_tokens.index("bank"), result.compare.query_tokens.index("bank")
    np.testing.assert_array_equal(view.row_a.weights, result.attentions()[2, 4, i])
    np.testing.assert_array_equal(view.row_b.weights, result.compare.attentions()[2, 4, j])
    assert view.row_a.tokens == result.key_tokens and view.row_b.tokens == result.compare.key_tokens
    assert view.row_a.full_title == f"A: 'bank' (token {i}) attends · L3·H5"
    assert view.row_b.full_title == f"B: 'bank' (token {j}) attends · L3·H5"
    # side by side, beside the cosine plot, in one row
    a_box, b_box = view.row_a.sceneBoundingRect(), view.row_b.sceneBoundingRect()
    cos_box = view.cosine_plot.sceneBoundingRect()
    assert cos_box.right() <= a_box.left() + 1 and a_box.right() <= b_box.left() + 1
    assert abs(a_box.top() - b_box.top()) < 1 and abs(a_box.top() - cos_box.top()) < 1
    # the bars are drawn: the longest bar of A reaches its weight on the x axis, in the theme's line colour
    image = pixels(view.canvas)
    top = int(np.argmax(result.attentions()[2, 4, i]))
    point = view.row_a.getViewBox().mapViewToScene(pg.Point(result.attentions()[2, 4, i, top] * 0.5, top))
    pixel = view.canvas.mapFromScene(point)
    expected = np.array(theme.color("lines" if top != i else "accent").getRgb()[:3])
    assert np.abs(image[pixel.y(), pixel.x()].astype(int) - expected).max() <= 10


def test_presets_hold_the_bank_and_trophy_pairs():
    assert PRESETS["bank: account / river"][2] == "bank"
    assert PRESETS["trophy: big / small"] == (
        "The trophy would not fit in the suitcase because it was too big.",
        "The trophy would not fit in the suitcase because it was too small.", "it")
