"""The heads grid: labelled thumbnails, the role filter, and switching heads off by clicking them."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import ROLE_THRESHOLDS, attention_change, kl_divergence
from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.views.heads import ALL_HEADS, HeadsView
from tests.core.tiny_gguf import write_tiny_llama
from tests.ui.conftest import build_view


def build(qtbot, session: Session):
    return build_view(qtbot, HeadsView, session)


def test_role_filter_shows_only_the_heads_of_that_role(qtbot):
    view, _, _, result = build(qtbot, Session(backend="numpy"))
    assert [plot.titleLabel.text.split(" · ")[0] for plot in view.head_plots][:2] == ["L1·H1", "L1·H2"]
    view.role.setCurrentText("previous")
    view.role.activated.emit(view.role.currentIndex())
    scores = result.head_roles["previous"][0]
    expected = [head for head in range(12) if scores[head] >= ROLE_THRESHOLDS["previous"]]
    assert 2 in expected and view.grid_heads == expected and len(view.head_plots) == len(expected)
    assert view.head_plots[0].titleLabel.text == f"L1·H{expected[0] + 1} · previous {scores[expected[0]]:.2f}"
    np.testing.assert_array_equal(view.head_images[0].image, result.attentions()[0, expected[0]])
    np.testing.assert_allclose(view.overview.matrix, result.head_roles["previous"], atol=1e-6)
    assert "previous score per layer and head" in view.overview.titleLabel.text
    assert f"{len(expected)} of 12 heads in layer 1" in view.caption.text()
    view.role.setCurrentText(ALL_HEADS)
    view.role.activated.emit(0)
    assert view.grid_heads == list(range(12))


def click_panel(qtbot, view, index):
    plot = view.head_plots[index]
    centre = view.grid.mapFromScene(plot.sceneBoundingRect().center())
    qtbot.mouseClick(view.grid.viewport(), Qt.LeftButton, pos=centre)


def test_clicking_heads_switches_them_off_and_the_effect_is_shown(qtbot):
    view, model, results, _ = build(qtbot, Session(backend="numpy", layer=1))
    view.ablate.setChecked(True)
    click_panel(qtbot, view, 4)
    assert model.session.ablation == Ablation(((1, 4),))
    view.ablation_mode.setCurrentText("uniform")
    view.ablation_mode.activated.emit(1)
    assert model.session.ablation == Ablation(((1, 4),), "uniform")
    result = Engine().compute(model.session)  # what the worker would compute for the new session
    result.precompute_views()
    results.set_result(result)
    qtbot.wait(20)
    assert view.head_plots[4].titleLabel.text.startswith("off · L2·H5")
    assert view.head_plots[4].getViewBox().border.style() == Qt.DashLine  # the switched-off frame
    assert view.head_plots[3].getViewBox().border.style() == Qt.NoPen
    n = len(result.query_tokens)
    np.testing.assert_allclose(view.head_images[4].image, np.full((n, n), 1 / n), atol=1e-6)
    change = attention_change(result.baseline.attentions(), result.attentions())
    assert change[0] == 0 and change[2] > 0
    assert "Switched off: uniform L2·H5" in view.caption.text() and f"L3 {change[2]:.3f}" in view.caption.text()
    click_panel(qtbot, view, 4)
    assert not model.session.ablation
    view.ablate.setChecked(False)
    click_panel(qtbot, view, 6)
    assert model.session.head == 6 and not model.session.ablation


def test_decoder_ablation_shows_the_next_token_before_and_after(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path)
    session = Session(text="the cat sat", model=str(path), backend="numpy", ablation=Ablation(((0, 0), (0, 1))))
    view, _, _, result = build(qtbot, session)
    text = view.caption.text()
    divergence = kl_divergence(result.baseline.forward.next_logits, result.forward.next_logits)
    assert divergence > 0 and f"(KL {divergence:.4f} nats)" in text
    before, after = result.baseline.next_tokens[0], result.next_tokens[0]
    assert f"before: {before.label!r} {before.probability:.0%}" in text and f"after: {after.label!r}" in text
    assert "Switched off: zeroed L1·H1, L1·H2" in text
