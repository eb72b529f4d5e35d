"""The sample sentences the app offers, read from ``attnstudio/resources/presets.json`` (data, not code).

Two kinds: texts for the main text box (with an optional second text for cross-attention), and pairs of
texts for the compare view (with the word whose attention to follow).
"""
from __future__ import annotations

import functools
import json
from importlib import resources


@functools.cache
def _presets() -> dict:
    return json.loads(resources.files("attnstudio").joinpath("resources/presets.json").read_text(encoding="utf-8"))


def text_presets() -> list[tuple[str, str, str]]:
    """(menu label, text, second text or "") for the text box, in menu order."""
    return [(entry["label"], entry["text"], entry.get("pair_text", "")) for entry in _presets()["texts"]]


def comparison_presets() -> dict[str, tuple[str, str, str]]:
    """menu label -> (text A, text B, the word to follow) for the compare view, in menu order."""
    return {entry["label"]: (entry["text_a"], entry["text_b"], entry["word"]) for entry in _presets()["comparisons"]}
