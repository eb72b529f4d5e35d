"""Weights to colours: the colour scales, hiding special tokens, masked cells (no Qt)."""
from __future__ import annotations

import numpy as np
import pytest

from attnstudio.core.display import (
    COLOR_SCALES,
    LOG_FLOOR,
    describe_display,
    display_weights,
)

TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]


def sample(seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(5, 5))
    allowed = np.tril(np.ones((5, 5), bool))
    weights = np.where(allowed, np.exp(scores), 0.0)
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32), allowed


def test_per_row_scale_makes_every_rows_max_the_top():
    weights, allowed = sample()
    shown = display_weights(weights, allowed, TOKENS, TOKENS, "row")
    np.testing.assert_allclose(shown.values.max(axis=1), 1.0)
    assert shown.levels == (0.0, 1.0) and shown.colorbar_title == "weight / row max"
    np.testing.assert_array_equal(shown.weights, weights)  # the read-out keeps the weights


def test_auto_stretches_to_the_largest_allowed_weight_and_unit_stays_0_to_1():
    weights, allowed = sample()
    assert display_weights(weights, allowed, TOKENS, TOKENS, "auto").levels == (0.0, float(weights.max()))
    assert display_weights(weights, allowed, TOKENS, TOKENS, "unit").levels == (0.0, 1.0)


def test_log_scale():
    weights, allowed = sample()
    shown = display_weights(weights, allowed, TOKENS, TOKENS, "log")
    assert shown.levels[0] == LOG_FLOOR and shown.values.min() >= LOG_FLOOR
    np.testing.assert_allclose(shown.values[allowed], np.log10(np.maximum(weights[allowed], 1e-4)), rtol=1e-5)


def test_hide_special_removes_their_rows_and_columns_and_renormalises():
    weights, allowed = sample()
    shown = display_weights(weights, allowed, TOKENS, TOKENS, "unit", hide_special=True)
    assert shown.row_labels == shown.col_labels == ["the", "cat", "sat"]
    np.testing.assert_array_equal(shown.row_index, [1, 2, 3])
    np.testing.assert_allclose(shown.weights.sum(axis=1), 1.0, rtol=1e-6)
    kept = weights[1:4, 1:4]
    np.testing.assert_allclose(shown.weights, kept / kept.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(shown.masked, ~allowed[1:4, 1:4])


def test_masked_cells_are_marked_and_none_when_nothing_is_masked():
    weights, allowed = sample()
    np.testing.assert_array_equal(display_weights(weights, allowed, TOKENS, TOKENS).masked, ~allowed)
    assert display_weights(weights, None, TOKENS, TOKENS).masked is None
    assert display_weights(weights, np.ones((5, 5), bool), TOKENS, TOKENS).masked is None


@pytest.mark.parametrize("scale", COLOR_SCALES)
def test_every_scale_is_described(scale):
    assert COLOR_SCALES[scale] in describe_display(scale, False)
    assert "special tokens hidden" in describe_display(scale, True)
