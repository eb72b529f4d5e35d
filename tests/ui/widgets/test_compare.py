"""The Compare view: A and B at the same head, B − A where tokens align, one word through the layers."""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import cosine_similarity, layer_cosines
from attnstudio.session import Session
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
