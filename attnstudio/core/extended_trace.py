"""The trace a prefix-cache extension returns: old rows shared with the pass it extends, nothing copied.

Typing at the end of a 512-token text changes one row per layer, but a whole (heads, n, n) weights matrix per
layer (280 MB for SmolLM2's 30 layers) would be written on every key press. So an extension keeps its weights
as parts: the (heads, m0, m0) block of an earlier pass and blocks of rows added since, each (heads, rows, end)
with end = its last row + 1 (a causal row has weight 0 on every later key). The whole matrix is joined when
first read; one head's alone for a heatmap. Scores (before the mask) are computed from the queries and keys
when first read, by the same ``attention_scores`` call as the full pass.
"""
from __future__ import annotations

from typing import Any

from attnstudio.core.backend import array_namespace
from attnstudio.core.kernels import attention_scores
from attnstudio.core.transformer import AttentionTrace

# Join the parts into one block once this many row blocks have piled up (a long run of key presses).
MAX_ROW_BLOCKS = 24


class ExtendedTrace(AttentionTrace):
    """An :class:`AttentionTrace` whose scores and weights are built when first read (see the module)."""

    def __init__(self, queries, keys, values, base, blocks: list[tuple[int, Any]], context, *, score: str, scale,
                 seed: int):
        """base: (heads, m0, m0) weights; blocks: (first row, (heads, rows, first row + rows) weights), in order."""
        self._scores = self._weights = None
        self._score_options = {"score": score, "scale": scale, "seed": seed}
        if len(blocks) > MAX_ROW_BLOCKS:
            base, blocks = _joined(base, blocks), []
        self._base, self._blocks = base, blocks
        super().__init__(queries, keys, values, None, None, context)

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

    def first_rows(self, m: int) -> AttentionTrace:
        base, blocks = self._base, self._blocks
        if self._weights is not None:
            base, blocks = self._weights, []
        if m <= base.shape[-1]:
            base, blocks = base[:, :m, :m], []
        else:  # rows past m go; a block cut at m keeps its columns up to m (later ones are 0)
            blocks = [(row, block[:, :m - row, :m]) for row, block in blocks if row < m]
        return ExtendedTrace(self.queries[:, :m], self.keys[:, :m], self.values[:, :m], base, blocks,
                             self.context[:, :m], **self._score_options)


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
