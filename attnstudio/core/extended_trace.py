"""The trace a prefix-cache extension returns: old rows shared with the pass it extends, nothing copied.

Typing at the end of a 512-token text changes one row per layer, but a whole (heads, n, n) weights matrix per
layer (280 MB for SmolLM2's 30 layers) would be written on every key press, and joining the queries and context
of every layer (70 MB) as well. So an extension keeps them as parts:

- weights: the (heads, m0, m0) block of an earlier pass and blocks of rows added since, each (heads, rows, end)
  with end = its last row + 1 (a causal row has weight 0 on every later key);
- queries, context: row parts, (heads, rows, d) each, in order (no later row reads them).

Keys and values are joined on every extension: the new rows attend to all of them, and scores or weighted sums
split over parts round differently from the full pass's (by 1e-6 of the largest value on a random model). Whole
arrays are joined when first read; one head's weights alone for a heatmap. Scores (before the mask) are computed
from the queries and keys when first read, by the same ``attention_scores`` call as the full pass. When parts
pile up, the small ones after the first are joined into one (the first, the pass typing started from, is copied
only when the rows after it outgrow it), so a long run of key presses never copies the whole text each time.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from attnstudio.core.backend import array_namespace, concat
from attnstudio.core.kernels import attention_scores
from attnstudio.core.transformer import AttentionTrace

# Join row blocks / row parts once this many have piled up (a long run of key presses).
MAX_ROW_BLOCKS = 24
MAX_ROW_PARTS = 8
ROW_ARRAYS = ("queries", "keys", "values", "context")


class ExtendedTrace(AttentionTrace):
    """An :class:`AttentionTrace` whose arrays are built when first read (see the module)."""

    def __init__(self, parts: dict[str, list], base, blocks: list[tuple[int, Any]], *, score: str, scale,
                 seed: int):
        """parts: {name in ROW_ARRAYS: [(heads, rows, d) arrays in row order]}; base: (heads, m0, m0) weights;
        blocks: (first row, (heads, rows, first row + rows) weights), in order."""
        self._scores = self._weights = None
        self._score_options = {"score": score, "scale": scale, "seed": seed}
        if len(blocks) > MAX_ROW_BLOCKS:
            base, blocks = _compacted_blocks(base, blocks)
        self._base, self._blocks = base, blocks
        self._parts = {name: _compacted_parts(parts[name], axis=1) for name in ROW_ARRAYS}
        self._joined: dict[str, Any] = {}
        super().__init__(None, None, None, None, None, None)

    def _row_array(self, name: str):
        if name not in self._joined:
            parts = self._parts[name]
            self._joined[name] = parts[0] if len(parts) == 1 else concat(parts, axis=1)
            self._parts[name] = [self._joined[name]]
        return self._joined[name]

    queries = property(lambda self: self._row_array("queries"), lambda self, value: None)  # (heads, n, d_k)
    keys = property(lambda self: self._row_array("keys"), lambda self, value: None)  # (heads, n, d_k)
    values = property(lambda self: self._row_array("values"), lambda self, value: None)  # (heads, n, d_v)
    context = property(lambda self: self._row_array("context"), lambda self, value: None)  # (heads, n, d_v)

    @property
    def scores(self):  # (heads, n_q, n_k), scaled, before the mask
        if self._scores is None:
            self._scores = attention_scores(self.queries, self.keys, **self._score_options)
        return self._scores

    @scores.setter
    def scores(self, value) -> None:
        self._scores = value

    @property
    def weights(self):  # (heads, n_q, n_k), after mask and softmax
        if self._weights is None and self._base is not None:
            self._weights = _joined(self._base, self._blocks)
        return self._weights

    @weights.setter
    def weights(self, value) -> None:
        self._weights = value

    def head_weights(self, head: int):
        if self._weights is not None:
            return self._weights[head]
        return _joined(self._base[head:head + 1], [(row, block[head:head + 1]) for row, block in self._blocks])[0]

    def weight_parts(self) -> tuple[Any, list]:
        if self._weights is not None:
            return self._weights, []
        return self._base, list(self._blocks)

    def row_parts(self, name: str) -> list:
        return list(self._parts[name])

    def first_rows(self, m: int) -> AttentionTrace:
        base, blocks = self.weight_parts()
        if m <= base.shape[-1]:
            base, blocks = base[:, :m, :m], []
        else:  # rows past m go; a block cut at m keeps its columns up to m (later ones are 0)
            blocks = [(row, block[:, :m - row, :m]) for row, block in blocks if row < m]
        return ExtendedTrace({name: _first_rows_of(self._parts[name], m) for name in ROW_ARRAYS}, base, blocks,
                             **self._score_options)


def _first_rows_of(parts: list, m: int, axis: int = 1) -> list:
    kept, start = [], 0
    for part in parts:
        if start >= m:
            break
        kept.append(part[:, :m - start] if axis == 1 else part[:m - start])
        start += part.shape[axis]
    return kept


def _compacted_parts(parts: list, axis: int) -> list:
    """At most MAX_ROW_PARTS parts: the ones after the first joined into one (all of them once those outgrow it)."""
    if len(parts) <= MAX_ROW_PARTS:
        return parts
    tail = concat(parts[1:], axis=axis)
    return [concat([parts[0], tail], axis=axis)] if tail.shape[axis] > parts[0].shape[axis] else [parts[0], tail]


class HiddenStatesOnRead(Sequence):
    """A forward pass's hidden states, (n, d_model) each, kept as row parts and each joined when first read.

    An extension's new rows never read the old rows' hidden states, so typing does not copy the 31 (n, d_model)
    arrays (36 MB at 512 tokens) on every key press; the logit lens joins those it reads."""

    def __init__(self, parts: list[list]):
        self._parts = [_compacted_parts(rows, axis=0) for rows in parts]

    def __len__(self) -> int:
        return len(self._parts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        parts = self._parts[index]
        if len(parts) > 1:
            parts[:] = [concat(parts, axis=0)]
        return parts[0]

    def row_parts(self, index: int) -> list:
        return list(self._parts[index])

    def first_rows(self, m: int) -> HiddenStatesOnRead:
        return HiddenStatesOnRead([_first_rows_of(parts, m, axis=0) for parts in self._parts])


def hidden_row_parts(hidden_states, index: int) -> list:
    """Layer boundary ``index``'s hidden states as row parts (one, whole, for a plain list)."""
    if isinstance(hidden_states, HiddenStatesOnRead):
        return hidden_states.row_parts(index)
    return [hidden_states[index]]


def hidden_row(hidden_states, index: int, position: int):
    """(1, d_model): row ``position`` of layer boundary ``index``'s hidden states, without joining their parts."""
    for part in hidden_row_parts(hidden_states, index):
        if position < part.shape[0]:
            return part[position:position + 1]
        position -= part.shape[0]
    raise IndexError(position)


def _compacted_blocks(base, blocks: list[tuple[int, Any]]) -> tuple[Any, list]:
    """The row blocks joined into one (rows after the base, up to the last block's end), or everything into the
    base once those rows outgrow it."""
    first, last = blocks[0][0], blocks[-1][0] + blocks[-1][1].shape[-2]
    if last - first > base.shape[-1]:
        return _joined(base, blocks), []
    xp = array_namespace(base)
    block = xp.zeros((base.shape[0], last - first, last), dtype=base.dtype)
    for row, part in blocks:
        block[:, row - first:row - first + part.shape[-2], :part.shape[-1]] = part
    return base, [(first, block)]


def _joined(base, blocks: list[tuple[int, Any]]):
    """The whole (heads, n, n) weights from a base block and row blocks."""
    xp = array_namespace(base)
    n = base.shape[-1] if not blocks else blocks[-1][0] + blocks[-1][1].shape[-2]
    joined = xp.zeros((base.shape[0], n, n), dtype=base.dtype)
    m0 = base.shape[-1]
    joined[:, :m0, :m0] = base
    for row, block in blocks:
        joined[:, row:row + block.shape[-2], :block.shape[-1]] = block
    return joined
