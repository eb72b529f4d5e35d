"""The sample sentences come from attnstudio/resources/presets.json, shipped as package data."""
from __future__ import annotations

import fnmatch
import tomllib

from attnstudio.presets import comparison_presets, text_presets
from tests.conftest import PROJECT_ROOT


def test_text_presets_are_read_from_the_data_file():
    presets = text_presets()
    labels = [label for label, _, _ in presets]
    assert len(labels) == len(set(labels)) >= 3
    assert all(text.strip() for _, text, _ in presets)
    pairs = [pair for _, _, pair in presets if pair]
    assert pairs == ["We had a picnic on the grassy river bank."]  # the one cross-attention preset


def test_comparison_presets_name_a_word_both_texts_contain():
    presets = comparison_presets()
    assert list(presets) == ["bank: account / river", "trophy: big / small"]
    for text_a, text_b, word in presets.values():
        assert text_a != text_b
        assert word.casefold() in text_a.casefold() and word.casefold() in text_b.casefold()


def test_the_data_file_is_package_data():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["attnstudio"]
    assert any(fnmatch.fnmatch("resources/presets.json", pattern) for pattern in patterns)
