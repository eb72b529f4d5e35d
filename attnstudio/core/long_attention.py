"""Long documents: keep each layer's queries and keys and the softmax row statistics, never the (n, n) weights.

Past ``LIMITS["dense_tokens"]`` tokens a forward pass cannot keep every layer's weights (SmolLM2 at
8,192 tokens would need 30 x 9 x 8192^2 x 4 B = 72 GB). It keeps instead, per layer,

    queries    (heads, n, d)       scaled (the score factor is folded in) and, for Llama, after RoPE
    keys       (kv_heads, n, d)    query head h reads key head h // (heads / kv_heads)
    row_max    (heads, n)          max_j s_ij over the keys the mask allows
    row_sum    (heads, n)          sum_j exp(s_ij - row_max_i)

from which any weight is exact: w_ij = exp(q_i . k_j - row_max_i) / row_sum_i where the mask allows
(i, j), else 0, the same formula :func:`attnstudio.core.kernels.softmax` evaluates. The attention step of the
forward pass runs over blocks of query rows (:func:`attend_rows`), so at most (heads, block, n) scores
exist at once; the same pass reduces each block into per-head summaries (max and mean over tiles) and row
entropies, which the heads grid and the first picture of a head use without touching the weights again.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from attnstudio.core.masks import MaskSpec
from attnstudio.core.parallel import cpu_workers, run_groups, single_threaded_blas
from attnstudio.errors import AttnStudioError, InvalidSetting
from attnstudio.limits import LIMITS

ROW_BLOCK = 256  # query rows scored at once: (heads, 256, n) float32 is 75 MB for 9 heads at n = 8,192
SUMMARY_ROW_BLOCK = 512  # one head's rows weighed at once for its block summaries: 16 MB per core at n = 8,192
SUMMARY_CELLS = 512  # the default picture of a whole head: at most 512 x 512 tiles
# The summaries every head gets during the forward pass (what a switch of layer or head draws at once, and the
# heads grid's thumbnails): at most 256 x 256 tiles of at least 8 x 8 tokens. SmolLM2 at 8,192 tokens: tiles of
# 32 tokens, 270 heads x 256^2 x 2 x 4 B = 141 MB.
FORWARD_SUMMARY_CELLS = 256
MIN_FORWARD_TILE = 8
SUMMARY_KINDS = ("max", "mean")


class Cancelled(AttnStudioError):
    """The user stopped a long forward pass."""


def is_long(n_tokens: int) -> bool:
    """True when a text of ``n_tokens`` is past the dense threshold (its weights are computed on demand)."""
    return n_tokens > LIMITS["dense_tokens"].high


def tile_side(n: int, cells: int) -> int:
    """The side of the square tiles that cover an (n, n) matrix with at most ``cells`` tiles per axis."""
    return max(1, math.ceil(n / max(1, cells)))


@dataclass(frozen=True)
class MaskRule:
    """The mask of a long result as a rule, so any rectangle of it can be built without the (n, n) array.

    causal: the model's own mask (decoders) or the session's causal part; window: |i - j| <= width;
    valid_keys: key padding; blocked_cells: cells the user switched off by hand.
    """

    causal: bool = False
    window: int | None = None
    valid_keys: int | None = None
    blocked_cells: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_spec(cls, spec: MaskSpec, *, causal_model: bool, valid_keys: int | None = None) -> MaskRule:
        return cls(causal=causal_model or spec.has("causal"), window=spec.width if spec.has("window") else None,
                   valid_keys=valid_keys if spec.has("padding") else None,
                   blocked_cells=tuple(tuple(cell) for cell in spec.blocked_cells))

    @property
    def masks_anything(self) -> bool:
        return self.causal or self.window is not None or self.valid_keys is not None or bool(self.blocked_cells)

    def region(self, row_start: int, row_stop: int, col_start: int, col_stop: int) -> np.ndarray | None:
        """Boolean (rows, cols) of the rectangle, True = may attend; None when nothing is masked."""
        if not self.masks_anything:
            return None
        rows = np.arange(row_start, row_stop)[:, None]  # (rows, 1)
        cols = np.arange(col_start, col_stop)[None, :]  # (1, cols)
        allowed = np.ones((row_stop - row_start, col_stop - col_start), dtype=bool)
        if self.causal:
            allowed &= cols <= rows
        if self.window is not None:
            allowed &= np.abs(cols - rows) <= self.window
        if self.valid_keys is not None:
            allowed &= cols < self.valid_keys
        for row, col in self.blocked_cells:
            if row_start <= row < row_stop and col_start <= col < col_stop:
                allowed[row - row_start, col - col_start] = False
        return allowed

    def blocked_span(self, row_start: int, row_stop: int, col_stop: int) -> tuple[int, int]:
        """[first, last): the columns below ``col_stop`` that hold a masked cell of rows [row_start, row_stop)
        (first == last: none). A causal mask alone answers without building the region."""
        if not self.masks_anything:
            return 0, 0
        if self.window is None and self.valid_keys is None and not self.blocked_cells:  # causal: j > i
            first = min(row_start + 1, col_stop)
            return first, col_stop  # row i may not see keys i + 1 .. col_stop - 1
        blocked = np.flatnonzero(~self.region(row_start, row_stop, 0, col_stop).all(axis=0))
        return (int(blocked[0]), int(blocked[-1]) + 1) if blocked.size else (0, 0)

    def last_key(self, row_stop: int, n_k: int) -> int:
        """One past the last key any of the rows before ``row_stop`` may see (causal: the diagonal)."""
        stop = min(n_k, row_stop) if self.causal else n_k
        if self.window is not None:
            stop = min(stop, row_stop + self.window)
        if self.valid_keys is not None:
            stop = min(stop, self.valid_keys)
        return max(stop, 0)


@dataclass
class LongLayer:
    """One layer's attention of a long text: what reproduces every weight, and what was summarised."""

    queries: np.ndarray  # (heads, n, d) float32, already multiplied by the score factor
    keys: np.ndarray  # (kv_heads, n, d) float32
    row_max: np.ndarray  # (heads, n) max allowed score of each row (0 for a fully masked row)
    row_sum: np.ndarray  # (heads, n) sum of exp(score - row_max) over the allowed keys (0: fully masked)
    row_entropy: np.ndarray  # (heads, n) nats
    thumbnail_max: np.ndarray  # (heads, cells, cells) max weight over each tile (see FORWARD_SUMMARY_CELLS)
    thumbnail_mean: np.ndarray  # (heads, cells, cells) mean weight over each tile


@dataclass
class LongAttention:
    """Every layer's :class:`LongLayer` of one forward pass, with its mask; weights are made on demand."""

    layers: list[LongLayer]
    mask: MaskRule
    n_q: int
    n_k: int
    thumbnail_tile: int  # the side of a thumbnail tile, in tokens
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def heads(self) -> int:
        return self.layers[0].queries.shape[0]

    def kv_head(self, head: int) -> int:
        layer = self.layers[0]
        return head // (layer.queries.shape[0] // layer.keys.shape[0])

    def nbytes(self) -> int:
        """Bytes held by the kept arrays (what replaces the (layers, heads, n, n) weights)."""
        return sum(array.nbytes for layer in self.layers for array in vars(layer).values())

    def weights(self, layer: int, head: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The exact weights of query rows [r0, r1) and key columns [c0, c1) of one head.  -> (r1-r0, c1-c0)."""
        row_start, row_stop = _clamped(rows, self.n_q)
        col_start, col_stop = _clamped(cols, self.n_k)
        kept = self.layers[layer]
        q = kept.queries[head, row_start:row_stop]  # (rows, d)
        k = kept.keys[self.kv_head(head), col_start:col_stop]  # (cols, d)
        with single_threaded_blas():  # a zoom's or a hover's product: BLAS's threads spin-wait longer than it takes
            scores = q @ k.T  # (rows, cols)
        allowed = self.mask.region(row_start, row_stop, col_start, col_stop)
        if allowed is not None:
            scores[~allowed] = -np.inf
        return _weights_from_stats(scores, kept.row_max[head, row_start:row_stop],
                                   kept.row_sum[head, row_start:row_stop])

    def row(self, layer: int, head: int, row: int) -> np.ndarray:
        """(n_k,) the exact distribution of one query."""
        return self.weights(layer, head, (row, row + 1), (0, self.n_k))[0]

    def weight(self, layer: int, head: int, row: int, col: int) -> float:
        return float(self.weights(layer, head, (row, row + 1), (col, col + 1))[0, 0])

    def head_entropy(self) -> np.ndarray:
        """(layers, heads) mean row entropy, as :func:`attnstudio.core.metrics.head_entropy` of the full weights."""
        return np.stack([layer.row_entropy.mean(axis=-1) for layer in self.layers])

    def summary(self, layer: int, head: int, kind: str, cells: int = SUMMARY_CELLS,
                cancelled: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]:
        """(summary (ceil(n_q/t), ceil(n_k/t)), t): the max or mean weight over each t x t tile.

        t is the smallest side with at most ``cells`` tiles per axis (no finer than the forward pass's tiles,
        whose summaries answer at once, merged); a finer one scores the head's rows in blocks, cached per
        (layer, head, t). Raises Cancelled when ``cancelled()`` turns True.
        """
        if kind not in SUMMARY_KINDS:
            raise InvalidSetting(f"unknown summary {kind!r}; choose one of {', '.join(SUMMARY_KINDS)}")
        tile = self._tile_for(cells)
        if tile % self.thumbnail_tile == 0:
            kept = self.layers[layer]
            return _coarsen(kept.thumbnail_max[head], kept.thumbnail_mean[head], self.thumbnail_tile, tile,
                            self.n_q, self.n_k)[SUMMARY_KINDS.index(kind)], tile
        key = (layer, head, tile)
        if key not in self._cache:
            for old in self._summary_keys():
                self._cache.pop(old, None)  # one head's summaries at a time: they are what is on screen
            self._cache[key] = self._summarise_head(layer, head, tile, cancelled)
        return self._cache[key][SUMMARY_KINDS.index(kind)], tile

    def _tile_for(self, cells: int) -> int:
        tile = tile_side(max(self.n_q, self.n_k), cells)
        if tile > self.thumbnail_tile:  # coarser than the forward pass's tiles: a multiple of them
            tile = math.ceil(tile / self.thumbnail_tile) * self.thumbnail_tile
        return tile

    def prepare(self, layer: int, head: int) -> None:
        """Compute what the first picture of ``head`` needs (its summaries, the masked tiles), off the GUI thread."""
        self.tiles_masked(self.thumbnail_tile)
        self.tiles_masked(self._tile_for(SUMMARY_CELLS))
        self.summary(layer, head, "max")

    @property
    def forward_cells(self) -> int:
        """Tiles per axis of the summaries the forward pass kept (they answer at once)."""
        return math.ceil(max(self.n_q, self.n_k) / self.thumbnail_tile)

    def has_summary(self, layer: int, head: int, cells: int) -> bool:
        """True when :meth:`summary` answers at once (from the forward pass's summaries or the cache)."""
        tile = self._tile_for(cells)
        return tile % self.thumbnail_tile == 0 or (layer, head, tile) in self._cache

    def tiles_masked(self, tile: int) -> np.ndarray | None:
        """(cells_q, cells_k) bool: True where the mask forbids every cell of the tile; None: nothing masked."""
        if not self.mask.masks_anything:
            return None
        key = ("masked", tile)
        if key not in self._cache:
            cells_q, cells_k = math.ceil(self.n_q / tile), math.ceil(self.n_k / tile)
            allowed = np.zeros((1, cells_q, cells_k), np.float32)
            unused = np.zeros_like(allowed)
            block = tile * max(1, ROW_BLOCK // tile)
            for start in range(0, self.n_q, block):
                stop = min(self.n_q, start + block)
                region = self.mask.region(start, stop, 0, self.n_k).astype(np.float32)  # (rows, n_k)
                accumulate_tiles(region[None], start, tile, allowed, unused)
            self._cache[key] = allowed[0] == 0
        return self._cache[key]

    def _summary_keys(self) -> list:
        return [key for key in self._cache if key[0] != "masked"]

    def _summarise_head(self, layer: int, head: int, tile: int, cancelled) -> tuple[np.ndarray, np.ndarray]:
        kept = self.layers[layer]
        return summarise_tiles(kept.queries[head], kept.keys[self.kv_head(head)], kept.row_max[head],
                               kept.row_sum[head], self.mask, tile, cancelled)


def summarise_tiles(queries, keys, row_max, row_sum, mask: MaskRule, tile: int,
                    cancelled: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(max, mean) of each t x t tile of one head's weights, both (ceil(n_q / t), ceil(n_k / t)), never holding
    more than SUMMARY_ROW_BLOCK rows of them.

    queries (n_q, d) scaled, keys (n_k, d), row_max and row_sum (n_q,) from the forward pass. The weights
    w_ij = exp(q_i . k_j - row_max_i) / row_sum_i of a block of rows are made in one float32 buffer (matmul,
    subtract, exp, scale, in place), only up to the last key the mask lets the block see (causal: the
    diagonal, so half the work), then folded into tiles rows first (an element-wise max/add of whole rows),
    then columns. Blocks of rows are shared between the cores (every other block: causal blocks grow).
    """
    n_q, n_k = queries.shape[0], keys.shape[0]
    cells_q, cells_k = math.ceil(n_q / tile), math.ceil(n_k / tile)
    tile_max = np.zeros((cells_q, cells_k), np.float32)
    tile_sum = np.zeros((cells_q, cells_k), np.float32)
    block = tile * max(1, SUMMARY_ROW_BLOCK // tile)
    starts = range(0, n_q, block)
    inverse_sum = np.where(row_sum > 0, 1.0 / np.where(row_sum > 0, row_sum, 1.0), 0.0).astype(np.float32)  # (n_q,)

    def summarise_blocks(blocks: slice) -> None:
        scratch = np.empty((block, cells_k * tile), np.float32)  # each thread's own weights buffer
        for start in starts[blocks]:
            if cancelled is not None and cancelled():
                raise Cancelled("stopped")
            stop = min(n_q, start + block)
            rows, last = stop - start, max(mask.last_key(stop, n_k), 1)
            row_cells, col_cells = math.ceil(rows / tile), math.ceil(last / tile)
            weights = scratch[:row_cells * tile, :col_cells * tile]  # (rows padded, last padded) to whole tiles
            scores = weights[:rows, :last]
            np.matmul(queries[start:stop], keys[:last].T, out=scores)  # (rows, last)
            scores -= row_max[start:stop, None]
            mask_scores(scores, mask, start, stop)
            np.exp(scores, out=scores)  # masked: exp(-inf) = 0
            scores *= inverse_sum[start:stop, None]  # the weights; a fully masked row is 0
            weights[rows:] = 0.0  # padding: weights are >= 0, so zeros change neither max nor sum
            weights[:rows, last:] = 0.0
            by_rows = weights.reshape(row_cells, tile, col_cells * tile)  # (row tiles, t, cols)
            first = start // tile
            tile_max[first:first + row_cells, :col_cells] = (
                by_rows.max(axis=1).reshape(row_cells, col_cells, tile).max(axis=2))
            tile_sum[first:first + row_cells, :col_cells] = (
                by_rows.sum(axis=1).reshape(row_cells, col_cells, tile).sum(axis=2))

    workers = min(cpu_workers(), len(starts))
    run_groups(summarise_blocks, [slice(i, None, workers) for i in range(workers)])
    return tile_max, tile_sum / _tile_counts(n_q, n_k, tile)


def _clamped(span: tuple[int, int], n: int) -> tuple[int, int]:
    start, stop = max(0, int(span[0])), min(n, int(span[1]))
    if stop <= start:
        raise InvalidSetting(f"the region [{span[0]}, {span[1]}) lies outside the {n} tokens")
    return start, stop


def _weights_from_stats(scores, row_max, row_sum):
    """exp(scores - row_max) / row_sum (masked scores are -inf: 0); rows with nothing allowed are 0.  (rows, cols).

    Overwrites ``scores`` (a fresh matmul result) to save a pass over memory."""
    scores -= row_max[:, None]
    weights = np.exp(scores, out=scores)
    weights /= np.where(row_sum > 0, row_sum, 1.0)[:, None]
    weights[row_sum <= 0] = 0.0
    return weights


def mask_scores(scores, mask: MaskRule, row_start: int, row_stop: int) -> None:
    """Set scores (..., rows, cols) of rows [row_start, row_stop) and columns [0, cols) to -inf where ``mask``
    forbids the cell, building the mask only over the slab of columns that holds one (causal: the diagonal's)."""
    first, last = mask.blocked_span(row_start, row_stop, scores.shape[-1])
    if last > first:
        allowed = mask.region(row_start, row_stop, first, last)  # (rows, last - first)
        np.copyto(scores[..., first:last], np.float32(-np.inf), where=~allowed)


def accumulate_tiles(weights, row_start: int, tile: int, tile_max, tile_sum) -> None:
    """Fold weights (heads, rows, cols) of rows starting at ``row_start`` (a multiple of ``tile``) into the
    per-tile max and sum arrays (heads, cells_q, cells_k), in place. Columns past ``cols`` hold zeros."""
    heads, rows, cols = weights.shape
    row_cells, col_cells = math.ceil(rows / tile), math.ceil(cols / tile)
    if rows % tile or cols % tile:  # weights are >= 0: zero padding changes neither max nor sum
        padded = np.zeros((heads, row_cells * tile, col_cells * tile), dtype=weights.dtype)
        padded[:, :rows, :cols] = weights
        weights = padded
    # rows of a tile first (an element-wise max/add of whole rows), then its columns: 16x less to reduce
    by_rows = weights.reshape(heads, row_cells, tile, col_cells * tile)
    first = row_start // tile
    target_max = tile_max[:, first:first + row_cells, :col_cells]
    np.maximum(target_max, by_rows.max(axis=2).reshape(heads, row_cells, col_cells, tile).max(axis=3), out=target_max)
    tile_sum[:, first:first + row_cells, :col_cells] += by_rows.sum(axis=2).reshape(
        heads, row_cells, col_cells, tile).sum(axis=3)


def _tile_counts(n_q: int, n_k: int, tile: int) -> np.ndarray:
    """(cells_q, cells_k) the number of matrix entries each tile covers (edge tiles cover fewer)."""
    rows = np.minimum(tile, n_q - np.arange(0, n_q, tile))
    cols = np.minimum(tile, n_k - np.arange(0, n_k, tile))
    return (rows[:, None] * cols[None, :]).astype(np.float32)


def _coarsen(tile_max, tile_mean, fine: int, coarse: int, n_q: int, n_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Summaries over ``fine`` tiles merged into ``coarse`` tiles (coarse a multiple of fine)."""
    if coarse == fine:
        return tile_max, tile_mean
    factor = coarse // fine
    sums = tile_mean * _tile_counts(n_q, n_k, fine)
    rows, cols = tile_max.shape
    out_rows, out_cols = math.ceil(rows / factor), math.ceil(cols / factor)
    padded_max = np.zeros((out_rows * factor, out_cols * factor), np.float32)
    padded_sum = np.zeros_like(padded_max)
    padded_max[:rows, :cols], padded_sum[:rows, :cols] = tile_max, sums
    merged_max = padded_max.reshape(out_rows, factor, out_cols, factor).max(axis=(1, 3))
    merged_sum = padded_sum.reshape(out_rows, factor, out_cols, factor).sum(axis=(1, 3))
    return merged_max, merged_sum / _tile_counts(n_q, n_k, coarse)


@dataclass
class LongRecorder:
    """Collects :class:`LongLayer`s while a long forward pass runs, reporting progress and honouring cancel.

    progress(done, total) is called after each layer; cancelled() is polled between row blocks.
    """

    n: int
    mask: MaskRule
    total_layers: int
    progress: Callable[[int, int], None] | None = None
    cancelled: Callable[[], bool] | None = None
    layers: list[LongLayer] = field(default_factory=list)

    @property
    def thumbnail_tile(self) -> int:
        return max(MIN_FORWARD_TILE, tile_side(self.n, FORWARD_SUMMARY_CELLS))

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("the forward pass was stopped")

    def attend(self, q, k, v, *, factor: float):
        """One layer's attention over row blocks.  q (heads, n, d), k and v (kv_heads, n, d) -> context
        (heads, n, d_v); the layer's statistics and summaries are kept."""
        heads, n, d = q.shape
        kv_heads, d_v = k.shape[0], v.shape[-1]
        group = heads // kv_heads
        q = np.ascontiguousarray(q * np.float32(factor), dtype=np.float32)  # the factor folded in, once
        k = np.ascontiguousarray(k, dtype=np.float32)
        keys_t = [np.ascontiguousarray(k[i].T) for i in range(kv_heads)]  # (d, n) each
        # [values | keys]: one matmul gives each row's context and sum_j w_ij k_j (for the entropy)
        values_keys = [np.ascontiguousarray(np.concatenate([v[i], k[i]], axis=-1), dtype=np.float32)
                       for i in range(kv_heads)]  # (n, d_v + d) each
        grouped_q = q.reshape(kv_heads, group, n, d)  # query heads by the key head they read
        context = np.empty((heads, n, d_v), np.float32)
        row_max = np.zeros((heads, n), np.float32)
        row_sum = np.zeros((heads, n), np.float32)
        entropy = np.zeros((heads, n), np.float32)
        tile = self.thumbnail_tile
        cells = math.ceil(n / tile)
        tile_max = np.zeros((heads, cells, cells), np.float32)
        tile_sum = np.zeros((heads, cells, cells), np.float32)
        block = tile * max(1, ROW_BLOCK // tile)

        def attend_block(start: int) -> None:  # rows [start, start + block): disjoint slices of every output
            self.check_cancelled()
            stop = min(n, start + block)
            rows, last = stop - start, max(self.mask.last_key(stop, n), 1)
            block_q = grouped_q[:, :, start:stop].reshape(kv_heads, group * rows, d)  # (kv, group * rows, d)
            scores = np.empty((kv_heads, group * rows, last), np.float32)
            for i in range(kv_heads):
                np.matmul(block_q[i], keys_t[i][:, :last], out=scores[i])  # (group * rows, last)
            mask_scores(scores.reshape(kv_heads, group, rows, last), self.mask, start, stop)
            block_max = scores.max(axis=-1, keepdims=True)  # (kv, group * rows, 1)
            block_max = np.where(np.isfinite(block_max), block_max, np.float32(0.0))  # a fully masked row
            scores -= block_max
            weights = np.exp(scores, out=scores)  # unnormalised; masked cells exp(-inf) = 0
            total = weights.sum(axis=-1, keepdims=True)
            weights /= np.where(total > 0, total, np.float32(1.0))  # (kv, group * rows, last): the weights
            mixed = np.empty((kv_heads, group * rows, d_v + d), np.float32)
            for i in range(kv_heads):
                np.matmul(weights[i], values_keys[i][:last], out=mixed[i])  # [w @ v | w @ k]
            # entropy -sum w log w with log w = s - max - log total, and sum_j w_ij s_ij = q_i . (w @ k)_i
            mean_score = np.einsum("kre,kre->kr", block_q, mixed[..., d_v:])[..., None]
            rows_entropy = np.where(total > 0, block_max + np.log(np.where(total > 0, total, 1.0)) - mean_score,
                                    0.0)
            context[:, start:stop] = mixed[..., :d_v].reshape(heads, rows, d_v)
            row_max[:, start:stop] = block_max.reshape(heads, rows)
            row_sum[:, start:stop] = total.reshape(heads, rows)
            entropy[:, start:stop] = rows_entropy.reshape(heads, rows)
            accumulate_tiles(weights.reshape(heads, rows, last), start, tile, tile_max, tile_sum)
            del scores, weights, mixed

        # Blocks of rows are shared between the cores (every other block: causal blocks grow), BLAS on one
        # thread meanwhile: its own threads gained nothing on these (rows, 64) x (64, n) products under load.
        starts = range(0, n, block)

        def attend_blocks(blocks: slice) -> None:
            for start in starts[blocks]:
                attend_block(start)
        workers = min(cpu_workers(), len(starts))
        run_groups(attend_blocks, [slice(i, None, workers) for i in range(workers)])

        self.layers.append(LongLayer(q, k, row_max, row_sum, entropy, tile_max,
                                     tile_sum / _tile_counts(n, n, tile)))
        if self.progress is not None:
            self.progress(len(self.layers), self.total_layers)
        return context

    def finish(self) -> LongAttention:
        attention = LongAttention(self.layers, self.mask, self.n, self.n, self.thumbnail_tile)
        # The first picture's masked tiles, made here on the worker: the GUI thread spent 64 ms on them at 8,192
        # tokens, the longest event-loop stall left of a long document's arrival.
        attention.tiles_masked(self.thumbnail_tile)
        return attention
