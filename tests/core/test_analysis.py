"""The numbers behind "why this score", head roles, the head finder and the two-context comparison."""
from __future__ import annotations

import math

import numpy as np
import pytest

from attnstudio.core.analysis import (
    ROLE_THRESHOLDS,
    ROLES,
    align_tokens,
    aligned_difference,
    aligned_labels,
    cosine_similarity,
    find_word,
    head_roles,
    induction_scores,
    kl_divergence,
    layer_cosines,
    rank_heads,
    repeated_random_ids,
    score_breakdown,
    sentence_embedding,
)
from attnstudio.core.masks import parse_mask_spec
from attnstudio.core.transformer import encode
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.session import Session
from tests.conftest import GOLDEN_DIR


@pytest.mark.parametrize("score,temperature,mask", [("scaled_dot", 1.0, "none"), ("scaled_dot", 0.5, "causal"),
                                                    ("dot", 2.0, "none")])
def test_breakdown_sum_is_the_trace_score_and_softmax_the_stored_weight(score, temperature, mask):
    session = Session(text="The bank raised its rates.", score=score, temperature=temperature,
                      mask=parse_mask_spec(mask), backend="numpy")
    result = Engine().compute(session)
    n = len(result.query_tokens)
    for layer, head, query, key in [(0, 0, 3, 1), (2, 5, n - 1, 0), (5, 11, 4, 4)]:
        trace = result.forward.traces[layer]
        cell = score_breakdown(trace, layer, head, query, key, score=score, temperature=temperature,
                               mask=result.mask)
        assert cell.q.shape == cell.k.shape == cell.product.shape == (result.d_k,)
        np.testing.assert_allclose(cell.product, cell.q * cell.k)
        assert cell.scale == pytest.approx(1 / math.sqrt(result.d_k) if score == "scaled_dot" else 1.0)
        stored_score = float(trace.scores[head, query, key])
        assert cell.score == pytest.approx(stored_score, rel=1e-4, abs=1e-5)
        assert cell.dot == pytest.approx(stored_score * temperature / cell.scale, rel=1e-4, abs=1e-4)
        np.testing.assert_allclose(cell.row_weights, trace.weights[head, query], atol=1e-6)
        assert cell.weight == pytest.approx(float(trace.weights[head, query, key]), abs=1e-6)
        assert f"{cell.weight:.4f}" in cell.formula()


def test_breakdown_masked_key_has_zero_weight_and_additive_is_refused():
    result = Engine().compute(Session(text="one two three", mask=parse_mask_spec("causal"), backend="numpy"))
    cell = score_breakdown(result.forward.traces[0], 0, 0, 1, 3, mask=result.mask)
    assert cell.weight == 0.0 and cell.row_scores[3] == -math.inf
    assert cell.row_weights.sum() == pytest.approx(1.0)
    with pytest.raises(InvalidSetting, match="dot-product"):
        score_breakdown(result.forward.traces[0], 0, 0, 1, 1, score="additive")


def constructed_heads(n: int) -> tuple[np.ndarray, list[str]]:
    """(1, 6, n, n) heads whose role is known: previous, first, separator, local-but-not-previous, uniform, self."""
    tokens = ["[CLS]"] + [f"w{i}" for i in range(1, n - 2)] + [".", "[SEP]"]
    patterns = np.zeros((6, n, n), dtype=np.float32)
    for i in range(n):
        patterns[0, i, max(i - 1, 0)] = 1.0  # previous token (query 0 looks at itself)
        patterns[1, i, 0] = 1.0  # first-token sink
        patterns[2, i, n - 2:] = 0.5  # "." and [SEP]
        patterns[3, i, min(i + 2, n - 1)] = 1.0  # two ahead: local, not previous
        patterns[4, i, :] = 1.0 / n  # uniform: broad
        patterns[5, i, i] = 1.0  # itself: local, narrow
    return patterns[None], tokens


def test_head_roles_on_constructed_patterns():
    attentions, tokens = constructed_heads(12)
    roles = head_roles(attentions, tokens)
    assert set(roles) == set(ROLES) - {"induction"}
    for name in roles:
        assert roles[name].shape == (1, 6)
        assert ((0 <= roles[name]) & (roles[name] <= 1)).all()
    best = {name: int(np.argmax(roles[name][0])) for name in roles}
    assert best == {"previous": 0, "first": 1, "separator": 2, "local": 0, "broad": 4}
    assert roles["previous"][0, 0] == pytest.approx(1.0)
    assert roles["first"][0, 1] == pytest.approx(1.0)
    assert roles["separator"][0, 2] == pytest.approx(1.0)
    assert roles["local"][0, 3] == pytest.approx(1.0) and roles["local"][0, 5] == pytest.approx(1.0)
    assert roles["previous"][0, 3] == 0.0 and roles["previous"][0, 5] == 0.0
    assert roles["broad"][0, 4] == pytest.approx(1.0, abs=1e-5)
    assert roles["broad"][0, 0] == pytest.approx(0.0, abs=1e-6)


def test_broad_role_uses_the_keys_the_mask_leaves_visible():
    n = 8
    causal = np.tril(np.ones((n, n), dtype=bool))
    uniform_causal = causal / causal.sum(axis=-1, keepdims=True)
    roles = head_roles(uniform_causal[None, None].astype(np.float32), [f"t{i}" for i in range(n)], mask=causal)
    assert roles["broad"][0, 0] == pytest.approx(1.0, abs=1e-5)
    # without the mask the same rows look narrow (they cover only part of the keys)
    assert head_roles(uniform_causal[None, None], [f"t{i}" for i in range(n)])["broad"][0, 0] < 0.8


def test_induction_score_finds_the_induction_head():
    period, start = 10, 1
    ids = repeated_random_ids(np.arange(100, 1000), period, seed=3, prefix=[1])
    assert ids.shape == (start + 2 * period,) and (ids[start:start + period] == ids[start + period:]).all()
    n = ids.shape[0]
    induction = np.zeros((n, n))
    previous = np.zeros((n, n))
    for i in range(n):
        previous[i, max(i - 1, 0)] = 1.0
        # attend to the token after the last earlier copy of this token (itself if there is none)
        copies = [j for j in range(i) if ids[j] == ids[i]]
        induction[i, copies[-1] + 1 if copies else i] = 1.0
    attentions = np.stack([previous, induction])[None]  # (1, 2, n, n)
    scores = induction_scores(attentions, period, start)
    np.testing.assert_allclose(scores, [[0.0, 1.0]])
    with pytest.raises(InvalidSetting, match="does not fit"):
        induction_scores(attentions, period + 1, start)


def test_rank_heads_orders_every_head_by_the_cell_weight():
    rng = np.random.default_rng(0)
    attentions = rng.random((3, 4, 5, 5))
    ranked = rank_heads(attentions, 2, 3)
    assert len(ranked) == 12 and len({(m.layer, m.head) for m in ranked}) == 12
    assert [m.weight for m in ranked] == sorted(attentions[:, :, 2, 3].ravel(), reverse=True)
    top = ranked[0]
    assert attentions[top.layer, top.head, 2, 3] == top.weight == attentions[:, :, 2, 3].max()


def test_head_finder_on_minilm_it_to_cat():
    result = Engine().compute(Session(backend="numpy"))
    tokens = result.query_tokens
    ranked = rank_heads(result.attentions(), find_word(tokens, "it"), find_word(tokens, "cat"))
    assert ranked[0].weight == pytest.approx(float(result.attentions()[:, :, 8, 2].max()))
    assert ranked[0].weight > ranked[-1].weight


def golden_final(name: str) -> tuple[np.ndarray, np.ndarray]:
    golden = np.load(GOLDEN_DIR / f"{name}.npz", allow_pickle=False)
    return golden["input_ids"].reshape(-1), golden["hidden_states"]


def test_sentence_embedding_is_the_normalised_mean_of_the_golden_final_hidden_states(minilm):
    embeddings = {}
    for name in ("bank_account", "river_bank"):
        ids, golden_hidden = golden_final(name)
        ours = encode(minilm.parameters, ids).hidden_states[-1]  # (n, 384)
        embedding = sentence_embedding(ours)
        reference = golden_hidden[-1].astype(np.float64).mean(axis=0)
        reference /= np.linalg.norm(reference)
        assert embedding.shape == (384,)
        assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(embedding, reference, atol=1e-5)
        embeddings[name] = embedding
    similarity = cosine_similarity(embeddings["bank_account"], embeddings["river_bank"])
    assert similarity == pytest.approx(float(embeddings["bank_account"] @ embeddings["river_bank"]), abs=1e-6)
    assert 0.0 < similarity < 0.9  # related (both about banks), far from the same sentence


def test_sentence_embedding_pools_only_valid_tokens():
    hidden = np.array([[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    np.testing.assert_allclose(sentence_embedding(hidden, np.array([True, True, False])),
                               [math.sqrt(0.5), math.sqrt(0.5)])


def test_bank_in_two_contexts_per_layer(minilm, golden_index):
    hidden, tokens = {}, {}
    for name in ("bank_account", "river_bank"):
        ids, golden_hidden = golden_final(name)
        hidden[name] = encode(minilm.parameters, ids).hidden_states
        tokens[name] = golden_index[name]["tokens"]
        np.testing.assert_allclose(np.stack(hidden[name]), golden_hidden, atol=1e-4)
    i, j = find_word(tokens["bank_account"], "Bank"), find_word(tokens["river_bank"], "bank")
    assert tokens["bank_account"][i] == tokens["river_bank"][j] == "bank"
    cosines = layer_cosines(hidden["bank_account"], i, hidden["river_bank"], j)
    golden = layer_cosines(golden_final("bank_account")[1], i, golden_final("river_bank")[1], j)
    assert cosines.shape == (7,)
    np.testing.assert_allclose(cosines, golden, atol=1e-4)
    # same word piece, different position: similar at the embeddings, context pulls the two apart
    assert cosines[0] > 0.8 and cosines[-1] < cosines[0]
    assert find_word(tokens["bank_account"], "tiger") is None


def test_alignment_of_two_texts_and_the_difference_is_b_minus_a():
    a = ["[CLS]", "it", "was", "too", "big", ".", "[SEP]"]
    b = ["[CLS]", "it", "was", "too", "small", ".", "[SEP]"]
    index_a, index_b = align_tokens(a, b)
    np.testing.assert_array_equal(index_a, np.arange(7))
    np.testing.assert_array_equal(index_b, np.arange(7))
    assert aligned_labels(a, b, index_a, index_b)[4] == "big→small"
    c = ["[CLS]", "it", "was", "far", "too", "small", "[SEP]"]
    index_a, index_c = align_tokens(a, c)
    assert [a[i] for i in index_a] == [c[j] for j in index_c] == ["[CLS]", "it", "was", "too", "[SEP]"]
    weights_a = np.random.default_rng(1).random((7, 7))
    weights_c = np.random.default_rng(2).random((7, 7))
    difference = aligned_difference(weights_a, weights_c, index_a, index_c)
    assert difference.shape == (5, 5)
    assert difference[4, 3] == pytest.approx(weights_c[6, 4] - weights_a[6, 3], abs=1e-6)


def test_every_role_has_a_threshold_and_a_description():
    assert set(ROLE_THRESHOLDS) == set(ROLES)
    assert all(0 < value < 1 for value in ROLE_THRESHOLDS.values())


def test_kl_divergence_of_softmaxes():
    logits = np.array([2.0, 1.0, -1.0, 0.5])
    assert kl_divergence(logits, logits) == 0.0
    assert kl_divergence(logits, logits + 7.0) == pytest.approx(0.0, abs=1e-12)  # a shift changes no probability
    p = np.exp(logits) / np.exp(logits).sum()
    q_logits = np.array([0.0, 0.0, 0.0, 0.0])
    assert kl_divergence(logits, q_logits) == pytest.approx(float((p * np.log(p / 0.25)).sum()))
    assert kl_divergence(np.array([1000.0, 0.0]), np.array([0.0, 1000.0])) == pytest.approx(1000.0)
