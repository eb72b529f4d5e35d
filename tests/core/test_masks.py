from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnstudio.core.masks import (
    MaskSpec,
    build_mask,
    causal_mask,
    padding_mask,
    parse_mask_spec,
    sliding_window_mask,
)
from attnstudio.errors import InvalidSetting


def test_builders():
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(sliding_window_mask(4, 4, 1),
                                  [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(padding_mask(2, 4, 3), [[1, 1, 1, 0], [1, 1, 1, 0]])


def test_build_mask_combines_kind_and_custom_cells():
    spec = MaskSpec("causal", blocked_cells=((2, 1), (9, 9)))  # (9, 9) is out of range: ignored
    mask = build_mask(spec, 3, 3)
    expected = np.tril(np.ones((3, 3), bool))
    expected[2, 1] = False
    np.testing.assert_array_equal(mask, expected)
    assert build_mask(MaskSpec(), 4, 4) is None


def test_padding_mask_hides_padded_keys_only():
    mask = build_mask(MaskSpec("padding"), 5, 5, valid_keys=3)
    assert mask[:, :3].all() and not mask[:, 3:].any()
    assert MaskSpec("padding").padded_length(13) == 16
    assert MaskSpec("padding").padded_length(16) == 24
    assert MaskSpec("padding", pad_to=20).padded_length(13) == 20


def test_toggle_cell():
    spec = MaskSpec().with_cell_toggled(1, 2)
    assert spec.blocked_cells == ((1, 2),)
    assert spec.with_cell_toggled(1, 2).blocked_cells == ()


def test_parse(tmp_path):
    assert parse_mask_spec("causal") == MaskSpec("causal")
    assert parse_mask_spec("window:3") == MaskSpec("window", width=3)
    assert parse_mask_spec("padding:32") == MaskSpec("padding", pad_to=32)
    allowed = np.ones((3, 3), bool)
    allowed[0, 2] = False
    np.save(tmp_path / "m.npy", allowed)
    spec = parse_mask_spec(f"causal+custom:{tmp_path / 'm.npy'}")
    assert spec.kind == "causal" and spec.blocked_cells == ((0, 2),)


@pytest.mark.parametrize("text,match", [("diagonal", "unknown mask"), ("window:x", "integer"),
                                        ("window:-1", "window width"), ("padding:0", "padding length"),
                                        ("custom:/nonexistent.npy", "cannot read")])
def test_parse_refuses_bad_specs(text, match):
    with pytest.raises(InvalidSetting, match=match):
        parse_mask_spec(text)


def test_custom_mask_file_must_be_a_matrix_and_never_unpickled(tmp_path):
    np.save(tmp_path / "vector.npy", np.ones(3, bool))
    with pytest.raises(InvalidSetting, match="2-D"):
        parse_mask_spec(f"custom:{tmp_path / 'vector.npy'}")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidSetting, match="cannot read"):
        parse_mask_spec(f"custom:{tmp_path / 'objects.npy'}")


# --- combined masks: the intersection of what each part allows ----------------------------------------------
SINGLE_PARTS = {"causal": MaskSpec("causal"), "window": MaskSpec("window", width=2), "padding": MaskSpec("padding")}
COMBINATIONS = [("causal", "window"), ("causal", "padding"), ("window", "padding"), ("causal", "window", "padding")]


@pytest.mark.parametrize("parts", COMBINATIONS, ids="+".join)
def test_combined_mask_is_the_and_of_its_parts(parts):
    n_q, n_k, valid_keys = 9, 11, 7
    combined = MaskSpec(parts, width=2)
    expected = np.ones((n_q, n_k), bool)
    for part in parts:
        expected &= build_mask(SINGLE_PARTS[part], n_q, n_k, valid_keys=valid_keys)
    np.testing.assert_array_equal(build_mask(combined, n_q, n_k, valid_keys=valid_keys), expected)
    # each part removes something the others allow: dropping any part would change the mask
    for part in parts:
        others = MaskSpec(tuple(p for p in parts if p != part), width=2)
        assert not np.array_equal(build_mask(others, n_q, n_k, valid_keys=valid_keys), expected)


@pytest.mark.parametrize("parts", COMBINATIONS, ids="+".join)
def test_parse_and_describe_keep_every_part(parts):
    text = "+".join({"causal": "causal", "window": "window:2", "padding": "padding"}[p] for p in parts)
    spec = parse_mask_spec(text)
    assert spec == MaskSpec(parts, width=2)
    assert spec == parse_mask_spec("+".join(reversed(text.split("+"))))  # the order of the parts does not matter
    described = spec.describe()
    for part in parts:
        assert {"causal": "causal", "window": "sliding window ±2", "padding": "key padding"}[part] in described


def test_mask_parts_switch_on_and_off():
    spec = MaskSpec().with_kind("causal", True).with_kind("window", True)
    assert spec.kinds == ("causal", "window") and spec.kind == "causal+window"
    assert spec.with_kind("causal", False) == MaskSpec("window")
    assert MaskSpec("none") == MaskSpec() and MaskSpec().describe() == "no mask"
    with pytest.raises(InvalidSetting, match="unknown mask"):
        MaskSpec(("causal", "zigzag"))


@settings(max_examples=200, deadline=None)
@given(parts=st.sets(st.sampled_from(["causal", "window", "padding"]), min_size=1), n_q=st.integers(1, 12),
       n_k=st.integers(1, 12), width=st.integers(0, 5), valid=st.integers(0, 12))
def test_any_combination_is_the_and_of_its_single_masks(parts, n_q, n_k, width, valid):
    singles = {"causal": causal_mask(n_q, n_k), "window": sliding_window_mask(n_q, n_k, width),
               "padding": padding_mask(n_q, n_k, valid)}
    expected = np.logical_and.reduce([singles[part] for part in parts])
    mask = build_mask(MaskSpec(tuple(parts), width=width), n_q, n_k, valid_keys=valid)
    if mask is None:  # nothing masked (only padding, with no padded keys)
        assert expected.all()
    else:
        np.testing.assert_array_equal(mask, expected)
