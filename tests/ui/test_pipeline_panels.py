"""The Pipeline's panels say what they are and follow one hovered (query, key) pair with its numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnstudio.core.masks import MaskSpec
from attnstudio.session import Session
from attnstudio.ui import theme
from attnstudio.ui.views.pipeline import PipelineView
from attnstudio.ui.views.pipeline_panels import DESCRIPTIONS
from tests.ui.conftest import build_view
from tests.ui.looks import pixels


def test_every_panel_says_what_it_is(qtbot):
    view, _, _, _ = build_view(qtbot, PipelineView, Session(backend="numpy"))
    for key, plot in view.plots.items():
        assert plot.texts[plot.description] == DESCRIPTIONS[key]
        assert plot.description.isVisible() and plot.description.text.rstrip("…")
        assert DESCRIPTIONS[key].startswith(plot.description.text.rstrip("…"))
        assert plot.description.sceneBoundingRect().top() >= plot.getViewBox().sceneBoundingRect().bottom() - 1, \
            "the line sits under its matrix"


def test_hovering_a_weight_shows_the_same_pair_in_every_panel(qtbot):
    view, _, _results, result = build_view(qtbot, PipelineView, Session(backend="numpy", layer=1, head=2))
    view.plots["weights"].cell_hovered.emit(8, 3, 0.0)
    scores, weights = result.step(1, "scores")[2], result.attentions()[1, 2]
    numbers = view.numbers
    assert (numbers.query, numbers.key) == (8, 3)
    assert numbers.dot * numbers.scale / numbers.temperature == pytest.approx(float(scores[8, 3]), abs=1e-4)
    assert numbers.scale == pytest.approx(1 / np.sqrt(32))
    values = {key: plot.texts[plot.value] for key, plot in view.plots.items()}
    assert values["scores"] == (f"'it'→'sat': q·k {numbers.dot:.4g} × {numbers.scale:.4g} / T 1 = "
                                f"{float(scores[8, 3]):.4g}")
    assert values["weights"] == f"softmax → {weights[8, 3]:.4f}"
    assert values["masked"] == f"{float(scores[8, 3]):.4g}" and values["mask"] == "allowed"
    assert values["queries"] == "query of 'it' (row 8)" and values["keys"] == "key of 'sat' (row 3)"
    assert f"passed on × {weights[8, 3]:.4f}" in values["values"]
    assert f"softmax → {weights[8, 3]:.4f}" in view.readout.text() and "layer 2, head 3" in view.readout.text()
    for key in ("scores", "mask", "masked", "weights"):
        rect = view.plots[key].marker.rect()
        assert (rect.x(), rect.y(), rect.width(), rect.height()) == (3, 8, 1, 1)
    assert view.plots["queries"].marker.rect().y() == 8 and view.plots["keys"].marker.rect().y() == 3
    # hovering a query's row in Q keeps the key and moves the query
    view.plots["queries"].cell_hovered.emit(5, 10, 0.0)
    assert (view.numbers.query, view.numbers.key) == (5, 3)
    assert view.plots["weights"].marker.rect().y() == 5


def test_the_marker_is_drawn_around_the_cell(qtbot):
    view, _, _, _ = build_view(qtbot, PipelineView, Session(backend="numpy"))
    view.plots["scores"].cell_hovered.emit(4, 6, 0.0)
    qtbot.wait(20)
    image = pixels(view.canvas)
    plot = view.plots["scores"]
    box = view.canvas.mapFromScene(plot.getViewBox().mapViewToScene(plot.marker.rect()).boundingRect()).boundingRect()
    accent = np.array(theme.color("accent").getRgb()[:3])
    rows = image[box.top() - 1:box.top() + 2, box.left() + 2:box.right() - 2].astype(int)  # around the top edge
    best = max((np.abs(row - accent).max(axis=1) < 40).mean() for row in rows)
    assert best > 0.9, "the hovered cell is outlined in the accent colour"
    inside = image[box.center().y(), box.center().x()].astype(int)
    assert np.abs(inside - accent).max() > 40, "only outlined: the cell's own colour still shows"


def test_a_masked_pair_reads_blocked_and_minus_infinity(qtbot):
    session = Session(backend="numpy", mask=MaskSpec("causal"))
    view, _, _, result = build_view(qtbot, PipelineView, session)
    view.plots["scores"].cell_hovered.emit(1, 5, 0.0)
    values = {key: plot.texts[plot.value] for key, plot in view.plots.items()}
    assert values["mask"] == "blocked" and values["masked"] == "−∞"
    assert values["weights"] == "softmax → 0.0000" and result.attentions()[0, 0, 1, 5] == 0
    assert "mask: blocked → −∞" in view.readout.text()


def test_additive_scores_show_the_score_without_a_dot_product(qtbot):
    view, _, _, result = build_view(qtbot, PipelineView, Session(model="synthetic", score="additive", backend="numpy"))
    view.plots["weights"].cell_hovered.emit(2, 1, 0.0)
    score = float(result.step(0, "scores")[0][2, 1])
    assert view.numbers.dot is None
    assert view.plots["scores"].texts[view.plots["scores"].value].endswith(f"score {score:.4g}")


@pytest.mark.parametrize("kind", ["cross", "encoder"])
def test_t5_pairs_show_its_own_scale_bias_and_special_tokens(qtbot, kind):
    """T5 scales q·k by 1 (its weights fold 1/√d_k in) and its self-attention adds a position bias: the numbers
    under the panels and the read-out add up to the score drawn; '<pad>' is shown, not swallowed as a tag."""
    tiny_t5 = str(Path(__file__).resolve().parents[1] / "data" / "tiny-t5")
    session = Session(text="translate English to German: The house is wonderful.", target_text="Das Haus",
                      model=tiny_t5, backend="numpy", attention_kind=kind)
    view, _, results, _ = build_view(qtbot, PipelineView, session)
    result = results.result
    view.plots["weights"].cell_hovered.emit(0, 1, 0.0)
    numbers = view.numbers
    assert numbers.scale == 1.0
    score = float(view.arrays["scores"][0, 1])
    bias = 0.0 if result.position_bias is None else float(result.position_bias[0, 0, 1])
    assert (numbers.dot * numbers.scale + bias) / numbers.temperature == pytest.approx(score, abs=1e-4)
    shown = view.plots["scores"].texts[view.plots["scores"].value]
    if kind == "cross":
        assert numbers.bias is None and f"q·k {numbers.dot:.4g} × 1 / T 1 = {score:.4g}" in shown
        assert view.plots["queries"].texts[view.plots["queries"].value] == "query of '<pad>' (row 0)"
        assert "'<pad>'" in view.plots["queries"].value.text.replace("&lt;", "<").replace("&gt;", ">")
        assert view.plots["queries"].value.item.toPlainText().startswith("query of '<pad>'"), "drawn as text"
    else:
        assert numbers.bias == pytest.approx(bias) and f"+ bias {bias:.4g}) / T 1 = {score:.4g}" in shown
    assert f"= {score:.4g}; mask" in view.readout.text()
