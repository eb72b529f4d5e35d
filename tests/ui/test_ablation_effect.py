"""Switching heads off, end to end: the decoder's next token before/after (bars, KL), the model view's frames
and caption, and the ablation saved, exported and captioned."""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import kl_divergence
from attnstudio.session import Session
from attnstudio.ui.views.ablation_effect import probabilities_before
from attnstudio.ui.views.compare import PRESETS
from attnstudio.ui.views.next_token import NextTokenView
from tests.core.test_cli import run_cli
from tests.ui.conftest import build_view
from tests.ui.looks import pixels

OFF = Ablation(((0, 0), (0, 1), (1, 3), (1, 4)))


def softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_next_token_view_shows_before_and_after_with_kl(qtbot):
    view, _, _, result = build_view(qtbot, NextTokenView, Session(model="smollm2", backend="numpy", ablation=OFF))
    before = softmax(result.baseline.forward.next_logits)
    ids = [token.token_id for token in result.next_tokens]
    np.testing.assert_allclose(probabilities_before(result), before[ids], rtol=1e-6)
    x0, width = view.before_bars.opts["x0"], view.before_bars.opts["width"]
    np.testing.assert_allclose(width, before[ids] * 100, rtol=1e-6)
    assert list(x0) == [0.0] * len(ids)
    divergence = kl_divergence(result.baseline.forward.next_logits, result.forward.next_logits)
    assert divergence > 1e-3
    assert f"KL(before ‖ after) = {divergence:.4f} nats" in view.shift_label.text
    top_before = result.baseline.next_tokens[0]
    assert html.escape(f"{top_before.label!r} {top_before.probability:.0%}") in view.shift_label.text.split("<br>")[0]
    assert "with zeroed L1·H1, L1·H2, L2·H4, L2·H5 (dashed: before)" in view.plot.titleLabel.text
    # the dashed outline is drawn where a candidate lost probability: its right edge lies past the filled bar
    row = int(np.argmax(before[ids] * 100 - np.array([t.probability * 100 for t in result.next_tokens])))
    edge = view.plot.getViewBox().mapViewToScene(pg_point(before[ids][row] * 100, row))
    point = view.canvas.mapFromScene(edge)
    image = pixels(view.canvas)
    column = image[point.y() - 12:point.y() + 12, point.x() - 1:point.x() + 2].reshape(-1, 3).astype(int)
    foreground = np.array(view.palette().color(view.foregroundRole()).getRgb()[:3])
    assert (np.abs(column - foreground).max(axis=1) < 80).any(), "the outline of 'before' is drawn"


def pg_point(x, y):
    return pg.Point(float(x), float(y))


def test_without_ablation_there_is_no_before(qtbot):
    view, _, _, result = build_view(qtbot, NextTokenView, Session(model="smollm2", backend="numpy"))
    assert result.baseline is None and probabilities_before(result) is None
    assert len(view.before_bars.opts["width"]) == 0 and not view.shift_label.isVisible()


@pytest.mark.parametrize("model, view, effect", [
    ("minilm", "compare", "without"),  # the sentence cosine with and without the ablation
    ("smollm2", "next_token", "KL(before ‖ after) = "),
])
def test_ablation_is_saved_exported_and_captioned(tmp_path, model, view, effect):
    session = Session(model=model, ablation=Ablation(((0, 0), (1, 2)), "uniform"))
    path = tmp_path / "s.attnsession"
    session.save(path)
    assert Session.load(path).ablation == session.ablation
    text_a, text_b, _ = PRESETS["bank: account / river"]
    out = tmp_path / f"{view}.svg"  # SVG keeps text as text: the caption and the view's own lines can be read back
    pair = ["--compare", text_b, "--word", "bank"] if view == "compare" else []
    done = run_cli("export", text_a, "--model", model, "--view", view, *pair,
                   "--ablate", "1.1,2.3", "--ablation-mode", "uniform", "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    svg = html.unescape(out.read_text())
    assert "ablation: uniform L1·H1, L2·H3" in svg, "the caption names the ablation"
    assert effect in svg, "the figure shows the ablation's effect"
