"""The control panel alone with its models: it shows the session, writes edits back, and lists the tokens."""
from __future__ import annotations

from attnstudio.core.masks import MaskSpec
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.controls import ControlPanel
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel


def build_panel(qtbot, session: Session):
    session_model = SessionModel(session)
    results = ResultModel(session_model)
    panel = ControlPanel(session_model, results)
    qtbot.addWidget(panel)
    panel.resize(320, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel, session_model, results


def test_the_panel_follows_each_field_of_the_session(qtbot):
    panel, session_model, results = build_panel(qtbot, Session(backend="numpy"))
    assert panel.text.toPlainText() == Session().text and not panel.d_k.isEnabled()
    session_model.update(text="Hello there.", pair_text="General Kenobi.", model="synthetic", heads=2, d_k=8,
                         d_model=24, seed=7, score="dot", temperature=0.5, mask=MaskSpec("window", width=3),
                         color_scale="row", hide_special=True)
    assert panel.text.toPlainText() == "Hello there." and panel.pair.text() == "General Kenobi."
    assert panel.model.currentText().startswith("Synthetic")
    assert panel.heads.currentText() == "2"
    assert (panel.d_k.value(), panel.d_model.value(), panel.seed.value()) == (8, 24, 7)
    assert panel.d_k.isEnabled() and panel.d_model.isEnabled()
    assert panel.score.currentText().startswith("Dot product") and panel.temperature.value() == 0.5
    box = panel.mask_colour
    assert box.mask_parts["window"].isChecked() and not box.mask_parts["causal"].isChecked()
    assert box.window.value() == 3 and box.window.isEnabled() and not box.pad_to.isEnabled()
    assert box.color_scale.currentData() == "row" and box.hide_special.isChecked()


def test_edits_are_written_back_and_a_refused_one_is_reported(qtbot):
    panel, session_model, results = build_panel(qtbot, Session(backend="numpy", model="synthetic", heads=8, d_k=16))
    panel.seed.setValue(11)
    panel.temperature.setValue(2.0)
    panel.mask_colour.mask_parts["causal"].setChecked(True)
    panel.mask_colour.hide_special.setChecked(True)
    session = session_model.session
    assert (session.seed, session.temperature, session.mask.kinds, session.hide_special) == (11, 2.0, ("causal",), True)
    rejected = []
    session_model.rejected.connect(rejected.append)
    panel.d_k.setValue(512)  # 8 heads × 512 is wider than a synthetic projection may be
    assert rejected and "heads × d_k" in rejected[0]
    assert session_model.session.d_k == 16


def test_a_result_sets_the_layer_range_and_lists_its_tokens(qtbot):
    panel, session_model, results = build_panel(qtbot, Session(backend="numpy", layer=2, head=3))
    assert panel.tokens.text() == "Computing…"
    result = Engine().compute(session_model.session)
    results.set_result(result)
    assert panel.layer.maximum() == result.num_layers and (panel.layer.value(), panel.head.value()) == (3, 4)
    assert panel.tokens.text() == f"{len(result.query_tokens)} tokens: " + " · ".join(result.query_tokens)
    assert panel.tokens_toggle.text() == f"{len(result.query_tokens)} tokens"
    assert panel.d_model.value() == 384, "the greyed width is the pretrained model's own"
    session_model.update(layer=5, head=11)
    assert (panel.layer.value(), panel.head.value()) == (6, 12)


def test_a_long_token_list_is_one_numbered_paragraph_per_128_tokens(qtbot):
    """Past 128 tokens each paragraph opens with its first token's index; the list then lays out only the
    paragraphs in view (one 8,192-token paragraph cost 45 ms of the GUI thread as a long result arrived)."""
    panel, session_model, results = build_panel(qtbot, Session(backend="numpy", text="word " * 300))
    result = Engine().compute(session_model.session)
    results.set_result(result)
    tokens = result.query_tokens
    lines = panel.tokens.text().split("\n")
    assert lines[0] == f"{len(tokens)} tokens:" and len(tokens) > 256
    assert [line.split("] ")[0] for line in lines[1:]] == [f"[{i}" for i in range(0, len(tokens), 128)]
    assert " · ".join(line.split("] ", 1)[1] for line in lines[1:]) == " · ".join(tokens), "every token, in order"
    assert panel.tokens.document().blockCount() == len(lines)
    shown = panel.tokens.grab().toImage()  # the first paragraph is drawn (ink on the panel's background)
    background = shown.pixelColor(shown.width() - 2, shown.height() - 2)
    inked = sum(shown.pixelColor(x, y) != background for x in range(0, shown.width(), 3)
                for y in range(0, shown.height(), 3))
    assert inked > 50
