"""How attention weights are turned into colours: the colour scales, hiding special tokens, masked cells.

Pure NumPy, shared by the views and the exporters, so a picture and its caption agree on what
was drawn. A :class:`DisplayMatrix` is what a heatmap shows: the values to colour, the colour
levels, the cells the mask forbids (drawn in a neutral colour, not as near-zero attention), the
labels of the rows and columns, and the colour bar's title.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The one registry of colour scales: session value -> what the caption and the menus call it.
COLOR_SCALES = {"auto": "auto", "unit": "0–1", "row": "per row", "log": "log₁₀"}  # short: they go in captions
COLORBAR_TITLES = {"auto": "weight (0 to max)", "unit": "weight (0–1)", "row": "weight / row max",
                   "log": "log₁₀ weight"}
LOG_FLOOR = -4.0  # log scale: weights below 1e-4 share the lowest colour
MASKED_RGBA = (150, 150, 150, 255)  # neutral grey: no colour map here starts or ends with it
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>", "<pad>", "<bos>", "<eos>",
                            "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
                            "<|im_end|>"})


def is_special_token(token: str) -> bool:
    """[CLS], [SEP], BOS/EOS and padding tokens: the ones that soak up attention without meaning."""
    return token in SPECIAL_TOKENS


def describe_display(color_scale: str, hide_special: bool) -> str:
    """The caption's words for a colour setting, e.g. "colour: per row, special tokens hidden"."""
    text = f"colour: {COLOR_SCALES[color_scale]}"
    return text + (", special tokens hidden" if hide_special else "")


@dataclass
class DisplayMatrix:
    weights: np.ndarray  # (rows, cols) float32 weights shown (renormalised when special tokens are hidden)
    values: np.ndarray  # (rows, cols) float32, the weights transformed by the colour scale
    levels: tuple[float, float]  # the values coloured by the bottom and top of the colour map
    masked: np.ndarray | None  # (rows, cols) bool, True = the mask forbids this cell
    row_labels: list[str]
    col_labels: list[str]
    row_index: np.ndarray  # (rows,) positions of the shown rows among the result's queries
    col_index: np.ndarray  # (cols,) positions of the shown columns among the result's keys
    colorbar_title: str


def display_weights(weights: np.ndarray, allowed: np.ndarray | None, query_tokens: list[str],
                    key_tokens: list[str], color_scale: str = "auto", hide_special: bool = False) -> DisplayMatrix:
    """What to draw for one head's (n_q, n_k) ``weights``; ``allowed`` is the (n_q, n_k) mask, True = may attend.

    hide_special drops the special tokens' rows and columns and renormalises each remaining row to sum to 1
    (a row with nothing left stays zero).
    """
    if color_scale not in COLOR_SCALES:
        raise ValueError(f"unknown colour scale {color_scale!r}")
    weights = np.asarray(weights, dtype=np.float32)
    rows, cols = np.arange(weights.shape[0]), np.arange(weights.shape[1])
    if hide_special:
        keep_rows = [i for i in rows if not is_special_token(query_tokens[i])]
        keep_cols = [j for j in cols if not is_special_token(key_tokens[j])]
        if keep_rows and keep_cols:  # a text of only special tokens: show it as it is
            rows, cols = np.asarray(keep_rows), np.asarray(keep_cols)
            weights = weights[np.ix_(rows, cols)]
            totals = weights.sum(axis=1, keepdims=True)  # (rows, 1)
            weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
    masked = None
    if allowed is not None:
        masked = ~np.asarray(allowed, dtype=bool)[np.ix_(rows, cols)]
        if not masked.any():
            masked = None
    shown = weights if masked is None else weights[~masked]
    top = float(shown.max()) if shown.size else 0.0
    if color_scale == "unit":
        values, levels = weights, (0.0, 1.0)
    elif color_scale == "auto":
        values, levels = weights, (0.0, top if top > 0 else 1.0)
    elif color_scale == "row":
        row_max = weights.max(axis=1, keepdims=True)  # (rows, 1)
        values = np.divide(weights, row_max, out=np.zeros_like(weights), where=row_max > 0)
        levels = (0.0, 1.0)
    else:  # log
        values = np.log10(np.maximum(weights, 10.0 ** LOG_FLOOR)).astype(np.float32)
        levels = (LOG_FLOOR, max(float(np.log10(top)) if top > 0 else 0.0, LOG_FLOOR + 1.0))
    return DisplayMatrix(weights, values.astype(np.float32), levels, masked, [query_tokens[i] for i in rows],
                         [key_tokens[j] for j in cols], rows, cols, COLORBAR_TITLES[color_scale])
