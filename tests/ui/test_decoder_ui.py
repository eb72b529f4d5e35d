"""The built-in decoder in the app: picked from the model menu, drawn causal in the heatmap."""
from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QMessageBox

from attnstudio.core.display import MASKED_RGBA
from attnstudio.core.masks import MaskSpec
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.theme import apply_theme
from attnstudio.ui.views.logit_lens import LogitLensView
from attnstudio.ui.views.next_token import BAR_COLOUR, NextTokenView
from tests.core.test_sources import cache_entry, ollama_model
from tests.core.tiny_gguf import HEADS, KV_HEADS, LAYERS, write_tiny_llama
from tests.ui.conftest import open_model, wait_for_result
from tests.ui.looks import low_contrast, view_text
from tests.ui.test_main_window import pixels

VIRIDIS_ZERO = np.array([84, 1, 68])  # weight 0: viridis (68, 1, 84) as pixels() reads it, blue first


def cell_pixel(view, image: np.ndarray, row: int, col: int) -> np.ndarray:
    scene_point = view.plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
    point = view.canvas.mapFromScene(scene_point)
    return image[point.y(), point.x()].astype(int)


def test_smollm2_from_the_model_menu_draws_a_causal_heatmap(make_window, qtbot):
    window = make_window()
    picker = window.controls.model
    index = picker.findData("smollm2")
    assert picker.itemText(index) == "Built-in: SmolLM2-135M (decoder)"
    picker.setCurrentIndex(index)
    picker.activated.emit(index)
    wait_for_result(qtbot, window, lambda r: r.model_name == "smollm2", timeout=120_000)
    result = window.results.result
    assert (result.num_layers, result.heads) == (30, 9)
    assert result.query_tokens[:3] == ["The", " cat", " sat"]  # the text each token stands for, not 'Ġcat'
    window.session_model.update(layer=2, head=3)
    heatmap = window.views["heatmap"]
    qtbot.waitUntil(lambda: "layer 3/30 · head 4/9" in heatmap.plot.titleLabel.text)
    assert "smollm2" in heatmap.plot.titleLabel.text and "causal (the model's own)" in heatmap.plot.titleLabel.text
    image = pixels(heatmap.canvas)
    weights = result.attentions()[2, 3]
    n = weights.shape[0]
    # Above the diagonal the model's own causal mask leaves weight 0, drawn as masked (grey), not as the
    # colour map's dark end (which would read as near-zero attention).
    for row, col in [(0, n - 1), (2, 5), (n - 2, n - 1)]:
        assert weights[row, col] == 0 and not result.mask[row, col]
        assert np.abs(cell_pixel(heatmap, image, row, col) - MASKED_RGBA[:3]).max() <= 12
        assert np.abs(cell_pixel(heatmap, image, row, col) - VIRIDIS_ZERO).max() > 40
    # The first token is this head's attention sink: bright where the weights are large.
    assert weights[0, 0] == 1.0
    faint = int(np.argmin(weights[n - 1]))  # the last query's weakest (allowed) key
    assert cell_pixel(heatmap, image, 0, 0).sum() > cell_pixel(heatmap, image, n - 1, faint).sum() + 200
    assert picker.currentText() == "Built-in: SmolLM2-135M (decoder)"


def test_a_chosen_mask_combines_with_the_models_own(make_window, qtbot):
    window = make_window(Session(text="one two three four five six", model="smollm2", backend="numpy",
                                 mask=MaskSpec("window", width=1)))
    result = window.results.result
    n = len(result.query_tokens)
    expected = np.tril(np.ones((n, n), dtype=bool)) & ~np.tri(n, n, -2, dtype=bool)  # causal and |i - j| <= 1
    np.testing.assert_array_equal(result.mask, expected)
    assert (result.attentions()[:, :, ~expected] == 0).all()
    title = window.views["heatmap"].plot.titleLabel.text
    assert "causal (the model's own) + sliding window ±1" in title


def test_next_token_panel_draws_the_predictions_and_a_click_appends_one(make_window, qtbot):
    window = make_window(Session(text="The cat sat on the mat because it was tired", model="smollm2",
                                 backend="numpy"))
    window.session_model.update(view="next_token")
    view = window.views["next_token"]
    result = window.results.result
    candidates = result.next_tokens
    assert len(candidates) == 10 and candidates[0].probability >= candidates[-1].probability
    assert "10 most likely tokens after '␣tired'" in view.plot.titleLabel.text
    image = pixels(view.canvas)
    bar = np.all(np.abs(image.astype(int) - np.array(BAR_COLOUR[::-1])) <= 3, axis=-1)  # pixels() is B, G, R
    widths = []
    for row in range(len(candidates)):
        point = view.canvas.mapFromScene(view.plot.vb.mapViewToScene(QPointF(0, row)))
        # the widest of a few pixel rows: the axis's 5-pixel tick mark covers the start of the centre row
        widths.append(max(int(bar[point.y() + offset].sum()) for offset in range(-3, 4)))
    assert widths[0] > 100 and all(a >= b - 1 for a, b in zip(widths, widths[1:], strict=False)), widths
    ratio = candidates[1].probability / candidates[0].probability
    assert abs(widths[1] / widths[0] - ratio) < 0.03, "bar lengths follow the probabilities"
    # Click the top bar: its token is appended and the text recomputed with one more token.
    point = view.canvas.mapFromScene(view.plot.vb.mapViewToScene(QPointF(candidates[0].probability * 50, 0)))
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=QPoint(point.x(), point.y()))
    expected = "The cat sat on the mat because it was tired" + candidates[0].text
    qtbot.waitUntil(lambda: window.session_model.session.text == expected)
    wait_for_result(qtbot, window, lambda r: len(r.query_tokens) == 11, timeout=60_000)


def test_an_encoder_says_it_predicts_no_next_token(make_window):
    window = make_window()
    window.session_model.update(view="next_token")
    view = window.views["next_token"]
    assert "has no language-model head" in view.note.text() and not view.canvas.isVisible()


def test_logit_lens_shows_each_layers_prediction_for_the_chosen_position(make_window, qtbot):
    window = make_window(Session(text="The cat sat on the mat because it was tired", model="smollm2",
                                 backend="numpy"))
    window.session_model.update(view="logit_lens")
    view = window.views["logit_lens"]
    result = window.results.result
    assert view.position.value() == 10
    assert "each layer's next token after '␣tired' (position 10/10)" in view.plot.titleLabel.text
    visible = [label for label in view.labels if label.isVisible()]
    assert len(visible) == 30
    top = result.next_tokens[0]
    assert visible[-1].toPlainText() == f"{top.label}  {top.probability:.0%}", "the last layer is the prediction"
    image = pixels(view.canvas)

    bar = np.all(np.abs(image.astype(int) - np.array(BAR_COLOUR[::-1])) <= 3, axis=-1)
    assert bar.any(axis=1).sum() > 300, "thirty bars are drawn"
    view.position.setValue(3)  # ' sat': later layers predict ' on'
    qtbot.waitUntil(lambda: "after '␣sat' (position 3/10)" in view.plot.titleLabel.text)
    assert view.labels[29].toPlainText().startswith("␣on")


def test_logit_lens_explains_an_encoder_has_none(make_window):
    window = make_window()
    window.session_model.update(view="logit_lens")
    view = window.views["logit_lens"]
    assert "no language-model head" in view.note.text() and not view.canvas.isVisible()


def test_decoder_panels_are_readable_in_both_themes_and_across_a_toggle(qtbot, qapp, smollm2):
    result = Engine().compute(Session(text="The cat sat on the mat", model="smollm2", backend="numpy"))
    try:
        for view_class in (NextTokenView, LogitLensView):
            for theme in ("dark", "light", "dark"):
                apply_theme(theme)
                qapp.processEvents()
                session = SessionModel(Session(text="The cat sat on the mat", model="smollm2"))
                results = ResultModel(session)
                view = view_class(session, results)
                qtbot.addWidget(view)
                view.resize(900, 650)
                view.show()
                qtbot.waitExposed(view)
                results.set_result(result)
                samples = view_text(view, f"{theme}/{view_class.__name__}")
                assert len(samples) > 10, "the bars' values and the token labels are found"
                assert low_contrast(samples) == []
                apply_theme("light" if theme == "dark" else "dark", view)  # a toggle after drawing
                qapp.processEvents()
                assert low_contrast(view_text(view, f"toggled/{view_class.__name__}")) == []
    finally:
        apply_theme("light")


def test_opening_a_gguf_file_switches_to_it_and_a_damaged_one_changes_nothing(make_window, qtbot, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    good, bad = tmp_path / "tiny.gguf", tmp_path / "broken.gguf"
    write_tiny_llama(good)
    bad.write_bytes(good.read_bytes()[:500])
    window = make_window()
    assert not open_model(qtbot, window, str(bad))
    assert "damaged" in window.statusBar().currentMessage() and window.session_model.session.model == "minilm"
    for dialog in [d for d in window.findChildren(QMessageBox) if d.isVisible()]:
        dialog.accept()
    assert open_model(qtbot, window, str(good))
    wait_for_result(qtbot, window, lambda r: r.model_name == "tiny")
    assert (window.results.result.num_layers, window.results.result.heads) == (LAYERS, HEADS)
    assert window.controls.model.currentText() == "File: tiny.gguf"


def test_the_model_menu_lists_cached_and_ollama_models_and_refuses_an_unsupported_one(make_window, qtbot, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    write_tiny_llama(tmp_path / "tiny.gguf")
    ollama_model(tmp_path / "ollama", "tiny", "latest", tmp_path / "tiny.gguf")
    snapshot = cache_entry(tmp_path / "hub", "facebook/bart-base")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bart"}))
    window = make_window()
    combo = window.controls.model
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert "Ollama: tiny:latest" in labels and "Hugging Face cache: facebook/bart-base" in labels

    combo.activated.emit(labels.index("Hugging Face cache: facebook/bart-base"))
    assert window.statusBar().currentMessage() == "Loading facebook/bart-base…"  # in a thread: the window draws on
    qtbot.waitUntil(lambda: "attnstudio runs the model families bert, llama" in window.statusBar().currentMessage())
    assert window.session_model.session.model == "minilm" and combo.currentData() == "minilm"
    for dialog in [d for d in window.findChildren(QMessageBox) if d.isVisible()]:
        dialog.accept()

    combo.activated.emit(labels.index("Ollama: tiny:latest"))
    wait_for_result(qtbot, window, lambda r: r.model_name == "tiny:latest")
    assert (window.results.result.num_layers, window.results.result.heads) == (LAYERS, HEADS)
    assert combo.currentText() == "Ollama: tiny:latest"


def test_the_heads_grid_labels_which_query_heads_share_a_key_value_head(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    write_tiny_llama(tmp_path / "tiny.gguf")
    window = make_window()
    assert open_model(qtbot, window, str(tmp_path / "tiny.gguf"))
    wait_for_result(qtbot, window, lambda r: r.model_name == "tiny")
    assert window.results.result.kv_heads == KV_HEADS
    window.session_model.update(view="heads")
    view = window.views["heads"]
    qtbot.waitUntil(lambda: len(view.head_plots) == HEADS and "KV" in view.head_plots[0].titleLabel.text)
    kv_of = [int(plot.titleLabel.text.split("KV ")[1].split(" ")[0]) for plot in view.head_plots]
    assert kv_of == [1, 1, 2, 2]  # repeat_kv: consecutive query heads share one key/value head
    assert "4 query heads share 2 key/value heads, 2 each" in view.caption.text()
    assert "tiny" in view.caption.text()
    assert "causal (the model's own)" in view.caption.text() and "no mask" not in view.caption.text()

    window.session_model.update(model="minilm")  # an encoder: every head has its own keys and values
    wait_for_result(qtbot, window, lambda r: r.model_name == "minilm")
    qtbot.waitUntil(lambda: len(view.head_plots) == 12)
    assert window.results.result.kv_heads is None and all("KV" not in p.titleLabel.text for p in view.head_plots)
