"""The logit-lens view alone with its models: one bar per layer, following the text's last token."""
from __future__ import annotations

import pytest

from attnstudio.engine import Engine
from attnstudio.session import Session
from attnstudio.ui.views.logit_lens import LogitLensView
from tests.ui.conftest import build_view


def test_one_bar_per_layer_follows_the_last_token_of_a_new_text(qtbot):
    view, session_model, results, result = build_view(qtbot, LogitLensView,
                                                      Session(text="The cat sat", model="smollm2", backend="numpy"))
    n = len(result.query_tokens)
    assert view.position.value() == n
    tops = result.logit_lens(n - 1)
    assert list(view.bars.opts["width"]) == pytest.approx([top.probability * 100 for top in tops])
    assert len(tops) == result.num_layers
    assert f"(position {n}/{n})" in view.plot.titleLabel.text
    assert view.labels[-1].toPlainText().endswith(f"{tops[-1].probability:.0%}")

    session_model.update(text="The cat sat on the mat")
    results.set_result(Engine().compute(session_model.session))  # what the compute worker would publish
    longer = results.result
    m = len(longer.query_tokens)
    qtbot.waitUntil(lambda: f"(position {m}/{m})" in view.plot.titleLabel.text)
    assert view.position.value() == m > n
    assert list(view.bars.opts["width"]) == pytest.approx([top.probability * 100 for top in longer.logit_lens(m - 1)])
    assert "after '␣mat'" in view.plot.titleLabel.text
