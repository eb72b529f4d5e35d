"""Long documents: weights made on demand from kept queries, keys and row statistics equal the plain path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attnstudio import cli
from attnstudio.core.ablation import Ablation
from attnstudio.core.families import llama
from attnstudio.core.kernels import softmax
from attnstudio.core.long_attention import Cancelled, LongRecorder, MaskRule, is_long
from attnstudio.core.long_forward import bert_long_forward, llama_long_forward
from attnstudio.core.masks import MaskSpec, build_mask, causal_mask
from attnstudio.core.metrics import head_entropy
from attnstudio.core.transformer import encode
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.limits import LIMITS, Limit
from attnstudio.session import Session
from tests.core.test_families import tiny_llama

N = 2048
SPEC = MaskSpec(("window",), width=300, blocked_cells=((700, 650), (2000, 1999), (5, 0)))


@pytest.fixture(scope="module")
def runs():
    """A tiny Llama (4 query heads on 2 key heads) on 2,048 tokens, plain and long, with a window and cells."""
    p = tiny_llama(heads=4, kv_heads=2, layers=2, vocab=40)
    ids = np.random.default_rng(1).integers(0, 40, N)
    user_mask = build_mask(SPEC, N, N)  # (n, n) bool: the plain path's session mask
    dense = llama.forward(p, ids, mask=user_mask)
    rule = MaskRule.from_spec(SPEC, causal_model=True)
    forward, long = llama_long_forward(p, ids, LongRecorder(N, rule, len(p.layers)))
    return dense, forward, long, causal_mask(N, N) & user_mask


def test_the_mask_rule_builds_any_rectangle_of_the_full_mask(runs):
    *_, full_mask = runs
    rule = MaskRule.from_spec(SPEC, causal_model=True)
    for rows, cols in [((0, N), (0, N)), ((640, 900), (600, 700)), ((1999, 2001), (1990, 2048)), ((0, 7), (0, 3))]:
        np.testing.assert_array_equal(rule.region(*rows, *cols), full_mask[rows[0]:rows[1], cols[0]:cols[1]])
    assert MaskRule().region(0, 4, 0, 4) is None  # nothing masked: no array


def test_on_demand_weights_equal_the_softmax_of_the_kept_queries_and_keys(runs):
    """The exactness claim: any weight, any region, from (q, k, row max, row sum) alone (<= 1e-6)."""
    _, _, long, full_mask = runs
    for layer in range(long.num_layers):
        kept = long.layers[layer]
        for head in range(long.heads):
            plain = softmax(kept.queries[head] @ kept.keys[long.kv_head(head)].T, full_mask)  # (n, n)
            np.testing.assert_allclose(long.weights(layer, head, (0, N), (0, N)), plain, rtol=0, atol=1e-6)
            region = long.weights(layer, head, (1500, 1756), (1300, 1556))  # a 256 x 256 zoom
            np.testing.assert_allclose(region, plain[1500:1756, 1300:1556], rtol=0, atol=1e-6)
            assert long.weight(layer, head, 700, 650) == 0.0  # a blocked cell
            assert long.row(layer, head, 5)[0] == 0.0 and long.row(layer, head, 5)[1:6].sum() == pytest.approx(1.0)


def test_the_long_forward_pass_equals_the_plain_path(runs):
    """Layer 1 sees identical inputs (<= 1e-6); deeper layers differ only by float rounding of the residual."""
    dense, forward, long, _ = runs
    for layer in range(long.num_layers):
        tolerance = 1e-6 if layer == 0 else 1e-5
        for head in range(long.heads):
            np.testing.assert_allclose(long.weights(layer, head, (0, N), (0, N)), dense.traces[layer].weights[head],
                                       rtol=0, atol=tolerance)
    np.testing.assert_allclose(forward.hidden_states[-1], dense.hidden_states[-1], rtol=0, atol=1e-4)
    np.testing.assert_allclose(forward.next_logits, dense.next_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(long.head_entropy(), head_entropy(dense.attentions()), rtol=0, atol=1e-5)


# per head (tiles of 4 and 3 tokens), from the forward pass's tiles (8, 24 and 56)
@pytest.mark.parametrize("cells", [512, 700, 100, 256, 40])
def test_block_summaries_are_the_max_and_mean_of_the_full_matrix(runs, cells):
    _, _, long, full_mask = runs
    layer, head = 1, 3
    kept = long.layers[layer]
    full = softmax(kept.queries[head] @ kept.keys[long.kv_head(head)].T, full_mask)
    tile_max, tile = long.summary(layer, head, "max", cells)
    tile_mean, same_tile = long.summary(layer, head, "mean", cells)
    side = -(-N // tile)
    assert same_tile == tile and tile_max.shape == tile_mean.shape == (side, side) and side <= cells
    padded = np.full((side * tile, side * tile), np.nan)
    padded[:N, :N] = full
    blocks = padded.reshape(side, tile, side, tile)
    np.testing.assert_allclose(tile_max, np.nanmax(blocks, axis=(1, 3)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tile_mean, np.nanmean(blocks, axis=(1, 3)), rtol=1e-5, atol=1e-9)
    assert tile_max[-1, -1] > 0 and tile_max[0, -1] == 0 and tile_max[-1, 0] == 0  # causal, then the window


def test_the_finished_pass_carries_the_first_pictures_masked_tiles(runs):
    """Made on the worker with the pass (the GUI thread spent 64 ms on them at 8,192 tokens), and right."""
    _, _, long, full_mask = runs
    tile = long.thumbnail_tile
    assert ("masked", tile) in long._cache
    side = -(-N // tile)
    padded = np.zeros((side * tile, side * tile), bool)
    padded[:N, :N] = full_mask
    np.testing.assert_array_equal(long.tiles_masked(tile), ~padded.reshape(side, tile, side, tile).any(axis=(1, 3)))


def test_minilm_long_pass_equals_the_encoder(minilm):
    """The encoder keeps queries and keys too (MiniLM at its 512 positions), no mask at all."""
    ids = minilm.tokenizer.encode("Attention is all you need. " * 100).ids  # truncated to 512
    dense = encode(minilm.parameters, ids)
    forward, long = bert_long_forward(minilm.parameters, ids, LongRecorder(len(ids), MaskRule(), 6))
    n = len(ids)
    assert n == 512 and long.nbytes() * 4 < dense.attentions().nbytes  # the kept arrays: far below (6, 12, n, n)
    for layer in range(6):
        for head in (0, 7, 11):
            np.testing.assert_allclose(long.weights(layer, head, (0, n), (0, n)), dense.traces[layer].weights[head],
                                       rtol=0, atol=1e-5 if layer else 1e-6)
    np.testing.assert_allclose(forward.hidden_states[-1], dense.hidden_states[-1], rtol=0, atol=1e-4)


def test_progress_is_reported_per_layer_and_cancel_stops_the_pass():
    p = tiny_llama(layers=3)
    ids = np.arange(600) % 40
    seen = []
    llama_long_forward(p, ids, LongRecorder(600, MaskRule(causal=True), 3, progress=lambda *a: seen.append(a)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(Cancelled):
        llama_long_forward(p, ids, LongRecorder(600, MaskRule(causal=True), 3, cancelled=lambda: bool(seen.pop())))


def test_long_mode_refuses_what_needs_every_weight():
    p = tiny_llama()
    ids = np.arange(20) % 40
    with pytest.raises(InvalidSetting, match="dot-product"):
        llama_long_forward(p, ids, LongRecorder(20, MaskRule(causal=True), 2), score="additive")
    with pytest.raises(InvalidSetting, match="ablation"):
        llama_long_forward(p, ids, LongRecorder(20, MaskRule(causal=True), 2), ablation=Ablation(((0, 1),)))


def test_engine_goes_long_past_the_threshold_and_matches_smollm2s_plain_pass(monkeypatch, smollm2):
    """SmolLM2's 30 layers: the long pass against the plain one on the same text (the engine decides)."""
    assert not is_long(LIMITS["dense_tokens"].high) and is_long(LIMITS["dense_tokens"].high + 1)
    engine = Engine()
    session = Session(text="The cat sat on the mat because it was tired. " * 12, model="smollm2",
                      mask=MaskSpec(("window",), width=40))
    dense = engine.compute(session)
    monkeypatch.setitem(LIMITS, "dense_tokens", Limit(1, 64, "tokens whose weights are all kept"))
    long = engine.compute(session)
    assert dense.long is None and long.long is not None and long.num_layers == 30 and long.heads == 9
    assert any("Long document" in notice for notice in long.notices)
    n = len(long.query_tokens)
    for layer in (0, 14, 29):
        for head in range(9):
            np.testing.assert_allclose(long.long.weights(layer, head, (0, n), (0, n)), dense.attentions()[layer, head],
                                       rtol=0, atol=1e-6 if layer == 0 else 1e-5)
    assert [t.token_id for t in long.next_tokens[:5]] == [t.token_id for t in dense.next_tokens[:5]]
    np.testing.assert_allclose(long.head_entropy, dense.head_entropy, rtol=0, atol=1e-5)
    with pytest.raises(InvalidSetting, match="region by region"):
        long.attentions()
    assert long.rollout is None and long.head_roles is None
    with pytest.raises(InvalidSetting, match="ablation"):
        engine.compute(dataclasses.replace(session, ablation=Ablation(((0, 1),))))


def test_cli_compute_writes_a_long_documents_weights_from_queries_and_keys(monkeypatch, tmp_path, capsys):
    text = "Long documents keep queries and keys, and the file gets the weights made from them. " * 3
    dense = Engine().compute(Session(text=text, backend="numpy")).attentions()
    monkeypatch.setitem(LIMITS, "dense_tokens", Limit(1, 24, "tokens whose weights are all kept"))
    out = tmp_path / "long.npz"
    assert cli.main(["compute", text, "-o", str(out), "--layers", "2,5"]) == 0
    written = np.load(out)["attentions"]
    assert written.shape == (2,) + dense.shape[1:]
    np.testing.assert_allclose(written, dense[[1, 4]], rtol=0, atol=1e-5)
    assert "Long document" in capsys.readouterr().err
    monkeypatch.setattr(cli, "LONG_WRITE_BYTES", 1000)
    assert cli.main(["compute", text, "-o", str(out)]) != 0
    assert "choose fewer with --layers" in capsys.readouterr().err


def _one_layer(n: int, rule: MaskRule, seed: int = 3):
    """One layer of random (3 query heads on 1 key head) attention kept the long way, and each head's full
    weights by the plain softmax."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((3, n, 16), dtype=np.float32) * 2  # sharp rows: weights near 1 are there to test
    k, v = rng.standard_normal((1, n, 16), dtype=np.float32), rng.standard_normal((1, n, 16), dtype=np.float32)
    recorder = LongRecorder(n, rule, 1)
    recorder.attend(q, k, v, factor=0.25)
    long = recorder.finish()
    mask = rule.region(0, n, 0, n)
    kept = long.layers[0]
    full = [softmax(kept.queries[head] @ kept.keys[0].T, mask) for head in range(3)]  # (n, n) each
    return long, full


def _tiles_of(full: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(max, mean) over t x t tiles of a full matrix (edge tiles cover what is left), the slow obvious way."""
    side_q, side_k = -(-full.shape[0] // tile), -(-full.shape[1] // tile)
    padded = np.full((side_q * tile, side_k * tile), np.nan)
    padded[:full.shape[0], :full.shape[1]] = full
    blocks = padded.reshape(side_q, tile, side_k, tile)
    return np.nanmax(blocks, axis=(1, 3)), np.nanmean(blocks, axis=(1, 3))


MASK_RULES = {
    "causal": MaskRule(causal=True),  # the diagonal's slab, without building the region
    "window and cells": MaskRule(causal=True, window=90, blocked_cells=((600, 598), (700, 650), (999, 0))),
    "padding, not causal": MaskRule(valid_keys=777),
    "a row with nothing allowed": MaskRule(causal=True, blocked_cells=((2, 0), (2, 1), (2, 2))),
    "nothing masked": MaskRule(),
}


@pytest.mark.parametrize("rule", MASK_RULES.values(), ids=MASK_RULES.keys())
@pytest.mark.parametrize("tile", [3, 16, 41])
def test_tiled_summaries_equal_the_full_matrix_for_every_mask_and_odd_sizes(rule, tile):
    """1,000 tokens (no tile size divides it): the blocked summary kernel against max/mean of the whole matrix."""
    long, full = _one_layer(1000, rule)
    for head in range(3):
        tile_max, tile_mean = long._summarise_head(0, head, tile, None)
        expected_max, expected_mean = _tiles_of(full[head], tile)
        np.testing.assert_allclose(tile_max, expected_max, rtol=0, atol=1e-6)
        np.testing.assert_allclose(tile_mean, expected_mean, rtol=1e-5, atol=1e-9)
    if rule.blocked_cells == ((2, 0), (2, 1), (2, 2)):
        assert long.row(0, 1, 2).sum() == 0 and long._summarise_head(0, 1, 1, None)[0][2].max() == 0


def test_summaries_shared_between_cores_equal_those_on_one_core(monkeypatch):
    long, _ = _one_layer(1500, MaskRule(causal=True, window=300))
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "1")
    alone = long._summarise_head(0, 2, 4, None)
    monkeypatch.setenv("ATTNSTUDIO_THREADS", "3")  # more groups than cores: still every block once
    shared = long._summarise_head(0, 2, 4, None)
    for one, many in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(one, many)


def test_a_summary_stops_when_cancelled():
    long, _ = _one_layer(1200, MaskRule(causal=True))
    with pytest.raises(Cancelled):
        long.summary(0, 0, "max", 1200, cancelled=lambda: True)
    assert not long.has_summary(0, 0, 1200)  # nothing half-made is kept


@pytest.mark.parametrize("rule", MASK_RULES.values(), ids=MASK_RULES.keys())
def test_the_blocked_span_holds_every_masked_cell_of_a_row_block(rule):
    for rows, col_stop in [((0, 512), 512), ((512, 1000), 1000), ((256, 300), 1000), ((0, 3), 3)]:
        first, last = rule.blocked_span(*rows, col_stop)
        region = rule.region(*rows, 0, col_stop)
        if region is None or region.all():
            assert first == last
        else:
            blocked = np.flatnonzero(~region.all(axis=0))
            assert first <= blocked[0] and blocked[-1] < last <= col_stop
