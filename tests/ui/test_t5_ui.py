"""A T5 model in the app: source and target inputs, the attention selector, cross-attention drawn target rows ×
source columns, the relative position bias panel, and next tokens that extend the target (checked by pixels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt

from attnstudio.core.display import MASKED_RGBA
from attnstudio.session import Session
from tests.ui.conftest import wait_for_result
from tests.ui.test_decoder_ui import cell_pixel
from tests.ui.test_main_window import pixels

TINY_T5 = str(Path(__file__).resolve().parents[1] / "data" / "tiny-t5")
TINY_T5_GGUF = TINY_T5 + ".gguf"  # the same checkpoint as llama.cpp's converter writes it (SentencePiece vocabulary)
SOURCE = "translate English to German: The house is wonderful and the garden is very small."
TARGET = "Das Haus ist wunderbar"


def assert_heaviest_cell_drawn_brightest(heatmap, weights) -> None:
    """weights (n_tgt, n_src): viridis draws the heaviest cell much brighter (green-yellow) than the lightest
    (dark purple)."""
    image = pixels(heatmap.canvas)
    strong = np.unravel_index(np.argmax(weights), weights.shape)
    weak = np.unravel_index(np.argmin(weights), weights.shape)
    assert weights[strong] > weights[weak] + 0.2
    assert cell_pixel(heatmap, image, *strong)[1] > cell_pixel(heatmap, image, *weak)[1] + 60


def t5_session(**changes) -> Session:
    return Session(**{"text": SOURCE, "target_text": TARGET, "model": TINY_T5, "backend": "numpy",
                      "attention_kind": "cross", **changes})


def test_cross_attention_draws_target_rows_over_source_columns(make_window, qtbot):
    window = make_window(t5_session(layer=1, head=1))
    result = window.results.result
    box = window.controls.seq2seq
    assert box.isVisible() and box.target.text() == TARGET
    assert box.kind.currentData() == "cross" and "target rows × source columns" in box.kind.currentText()
    assert box.target_tokens.text() == "5 decoder inputs: <pad> ·  Das ·  Haus ·  ist ·  wunderbar"
    assert window.controls.tokens.text().startswith("17 tokens:  translate")  # the source under the text box
    assert window.tokens_label.text() == "17 source · 5 target tokens"
    heatmap = window.views["heatmap"]
    title = heatmap.plot.titleLabel.text
    assert "tiny-t5 · cross-attention · layer 2/3 · head 2/4" in title
    assert heatmap.plot.getAxis("left").labelText == "query (target)"
    assert heatmap.plot.getAxis("top").labelText == "key (source)"
    assert heatmap.plot.matrix.shape == (5, 17) and heatmap.plot.row_labels[0] == "<pad>"
    assert heatmap.plot.col_labels[-1] == "</s>"
    assert_heaviest_cell_drawn_brightest(heatmap, result.attentions()[1, 1])  # (n_tgt, n_src)
    # the title is HTML: <pad> is escaped, so the drawn text shows it
    assert heatmap.distribution.titleLabel.item.toPlainText() == "where '<pad>' (row 0) attends"


def test_the_selector_switches_kinds_without_computing(make_window, qtbot):
    window = make_window(t5_session())
    computed = window.results.computed
    heatmap = window.views["heatmap"]
    box = window.controls.seq2seq
    index = box.kind.findData("decoder")
    box.kind.setCurrentIndex(index)
    box.kind.activated.emit(index)
    assert window.session_model.session.attention_kind == "decoder"
    assert window.results.computed is computed and window.results.result is computed.for_kind("decoder")
    qtbot.waitUntil(lambda: heatmap.plot.matrix.shape == (5, 5))
    assert "decoder self-attention" in heatmap.plot.titleLabel.text
    assert "causal (the model's own)" in heatmap.plot.titleLabel.text
    assert heatmap.plot.getAxis("top").labelText == "key (target)"
    image = pixels(heatmap.canvas)
    assert np.abs(cell_pixel(heatmap, image, 0, 4) - MASKED_RGBA[:3]).max() <= 12  # the future: masked grey
    window.session_model.update(attention_kind="encoder")
    qtbot.waitUntil(lambda: heatmap.plot.matrix.shape == (17, 17))
    assert heatmap.plot.getAxis("left").labelText == "query (source)"
    assert window.results.computed is computed


def test_typing_a_target_recomputes_the_decoder(make_window, qtbot):
    window = make_window(t5_session(target_text=""))
    assert window.results.result.query_tokens == ["<pad>"]  # empty: the start token alone
    window.controls.seq2seq.target.setText("Das Haus")
    wait_for_result(qtbot, window, lambda r: r.query_tokens == ["<pad>", " Das", " Haus"])
    assert window.views["heatmap"].plot.matrix.shape == (3, 17)


def test_position_bias_panel_draws_the_heads_bias_along_diagonals(make_window, qtbot):
    window = make_window(t5_session(attention_kind="encoder", head=2))
    window.session_model.update(view="position_bias")
    view = window.views["position_bias"]
    qtbot.waitUntil(lambda: view.plot.matrix.shape == (17, 17))
    result = window.results.result
    bias = result.position_bias[2]
    np.testing.assert_array_equal(view.plot.matrix, bias)
    assert "position bias · head 3/4 · all 2 layers · both directions" in view.plot.titleLabel.text
    assert "encoder self-attention" in view.plot.titleLabel.text
    image = pixels(view.canvas)
    # one value along each diagonal (key - query fixed), so the same colour; unlike values, unlike colours
    for distance in (-3, 0, 2):
        cells = [(row, row + distance) for row in range(4, 9)]
        colours = [cell_pixel(view, image, *cell) for cell in cells]
        assert all(np.abs(c - colours[0]).max() <= 2 for c in colours), distance
    low, high = np.unravel_index(np.argmin(bias), bias.shape), np.unravel_index(np.argmax(bias), bias.shape)
    assert np.abs(cell_pixel(view, image, *low) - cell_pixel(view, image, *high)).max() > 80
    window.session_model.update(attention_kind="cross")
    qtbot.waitUntil(lambda: not view.canvas.isVisible())
    assert "Cross-attention adds no position bias" in view.note.text()


def test_an_encoder_has_no_position_bias_and_no_target_box(make_window, qtbot):
    window = make_window(Session(backend="numpy", view="position_bias"))
    view = window.views["position_bias"]
    assert not view.canvas.isVisible()
    assert view.note.text().startswith("minilm has no relative position bias")
    assert not window.controls.seq2seq.isVisible()
    assert window.controls.seq2seq.source_box.title() == "Input"


def test_a_next_token_click_appends_to_the_target(make_window, qtbot):
    window = make_window(t5_session(target_text=""))
    window.session_model.update(view="next_token")
    view = window.views["next_token"]
    result = window.results.result
    candidates = result.next_tokens
    assert len(candidates) == 10
    assert "10 most likely target tokens after '<pad>'" in view.plot.titleLabel.item.toPlainText()
    assert view.note.text().endswith("Click a bar to append that token to the target.")
    assert not view.generate.isVisibleTo(view), "Generate N continues decoder-only models; T5's bars extend the target"
    point = view.canvas.mapFromScene(view.plot.vb.mapViewToScene(QPointF(candidates[0].probability * 50, 0)))
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=QPoint(point.x(), point.y()))
    expected = candidates[0].text.lstrip()  # the first target word: no leading space
    qtbot.waitUntil(lambda: window.session_model.session.target_text == expected)
    assert window.session_model.session.text == SOURCE  # the source is untouched
    wait_for_result(qtbot, window, lambda r: len(r.target_tokens) > 1, timeout=30_000)


def test_head_ablation_is_offered_only_on_the_encoders_heads(make_window, qtbot):
    window = make_window(t5_session())
    window.session_model.update(view="heads")
    heads = window.views["heads"]
    qtbot.waitUntil(lambda: not heads.ablate.isEnabled())
    assert "choose encoder self-attention" in heads.ablate.toolTip()
    window.session_model.update(attention_kind="encoder")
    qtbot.waitUntil(heads.ablate.isEnabled)


def test_the_pair_field_is_greyed_with_a_reason_for_an_encoder_decoder(make_window, qtbot):
    """T5 takes no second sentence: the pair field is drawn disabled and its tooltip says why; a one-text model
    opens it again. A pair typed before switching stays editable, so the refusal can be acted on."""
    window = make_window(Session(text=SOURCE, backend="numpy"))
    pair = window.controls.pair
    open_look = pixels(pair)
    assert pair.isEnabled() and "Cross-attention" in pair.toolTip()
    window.load_model_folder(TINY_T5)
    wait_for_result(qtbot, window, lambda r: r.kinds is not None)
    assert not pair.isEnabled()
    assert pair.placeholderText() == "not used by an encoder-decoder model"
    assert "takes no second sentence" in pair.toolTip() and "target" in pair.toolTip()
    greyed = pixels(pair)
    assert np.abs(greyed.astype(int) - open_look.astype(int)).max() > 40, "the field is drawn as before"
    window.session_model.update(model="minilm", heads=None)
    wait_for_result(qtbot, window, lambda r: r.kinds is None)
    assert pair.isEnabled() and "Cross-attention" in pair.toolTip()
    assert np.array_equal(pixels(pair), open_look)

    window.session_model.update(pair_text="A second sentence.")
    with qtbot.waitSignal(window.controller.failed, timeout=30_000) as refused:
        window.session_model.update(model=TINY_T5, heads=None)
    assert "clear the pair text" in refused.args[0]
    assert pair.isEnabled(), "the pair that is refused must stay clearable"
    pair.clear()
    wait_for_result(qtbot, window, lambda r: r.kinds is not None)
    assert not pair.isEnabled()


def test_compare_says_it_does_not_run_an_encoder_decoder(make_window, qtbot):
    """With T5 the Compare tab named a pair text that does not exist (cross) or invited a text B it never runs
    (encoder): it now says why nothing is compared, and greys its text B field; MiniLM opens it again."""
    window = make_window(t5_session())
    window.session_model.update(view="compare")
    compare = window.views["compare"]
    qtbot.waitUntil(compare.note.isVisible)
    for kind in ("cross", "encoder"):
        window.session_model.update(attention_kind=kind)
        qtbot.waitUntil(lambda kind=kind: window.results.shown.attention_kind == kind)
        qtbot.wait(50)
        assert "an encoder-decoder model (T5) is not compared" in compare.note.text(), (kind, compare.note.text())
        assert not compare.text_b.isEnabled() and not compare.presets.isEnabled()
        assert pixels(compare.note).min() < 128, "the note is drawn"
    greyed = pixels(compare.text_b)
    window.session_model.update(model="minilm", heads=None, attention_kind="encoder")
    wait_for_result(qtbot, window, lambda r: r.kinds is None)
    qtbot.waitUntil(compare.text_b.isEnabled)
    assert compare.note.text().startswith("Type a second text (B)")
    assert not np.array_equal(pixels(compare.text_b), greyed)


def test_the_logit_lens_does_not_say_t5_has_no_head(make_window, qtbot):
    """T5 predicts next tokens (its Next token tab), so the Logit lens must not claim it has no language-model
    head, nor name the attention kind as if it were the model."""
    window = make_window(t5_session())
    window.session_model.update(view="logit_lens")
    lens = window.views["logit_lens"]
    qtbot.waitUntil(lambda: lens.note.isVisible() and bool(lens.note.text()))
    text = lens.note.text()
    assert "no language-model head" not in text and "cross-attention" not in text, text
    assert text.startswith("The logit lens reads decoder-only models; tiny-t5 is an encoder-decoder"), text
    assert not lens.canvas.isVisible() and pixels(lens.note).min() < 128


def test_opening_a_t5_gguf_shows_source_target_and_cross_attention(make_window, qtbot, monkeypatch):
    window = make_window(Session(text=SOURCE, backend="numpy"))
    box = window.controls.seq2seq
    assert not box.isVisible()
    monkeypatch.setattr("attnstudio.ui.main_window.QFileDialog.getOpenFileName",
                        lambda *args, **kwargs: (TINY_T5_GGUF, "GGUF models (*.gguf)"))
    window.open_gguf_file()  # File → Open GGUF model…
    wait_for_result(qtbot, window, lambda r: r.kinds is not None, timeout=60_000)
    assert box.isVisible() and box.source_box.title() != "Input"
    box.target.setText(TARGET)
    window.session_model.update(attention_kind="cross", layer=2, head=0)
    wait_for_result(qtbot, window, lambda r: r.attention_kind == "cross" and len(r.query_tokens) > 1)
    result = window.results.result
    n_tgt, n_src = len(result.query_tokens), len(result.key_tokens)
    assert result.query_tokens[0] == "<pad>" and result.key_tokens[-1] == "</s>"
    assert box.target_tokens.text().startswith(f"{n_tgt} decoder inputs: <pad> · ")
    heatmap = window.views["heatmap"]
    qtbot.waitUntil(lambda: heatmap.plot.matrix.shape == (n_tgt, n_src))
    assert "tiny-t5 · cross-attention · layer 3/3 · head 1/4" in heatmap.plot.titleLabel.text
    assert heatmap.plot.getAxis("left").labelText == "query (target)"
    assert_heaviest_cell_drawn_brightest(heatmap, result.attentions()[2, 0])  # (n_tgt, n_src)
