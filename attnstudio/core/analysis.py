"""Beyond the heatmap: where a score comes from, what a head does, one word in two contexts.

Pure functions over traces, attention weights and hidden states (host or device arrays;
``xp`` from the inputs where the work is array work, NumPy for the few numbers a panel
shows). Nothing here knows about Qt or about which model family produced the arrays.
"""
from __future__ import annotations

import difflib
import math
import unicodedata
from dataclasses import dataclass

import numpy as np

from attnstudio.core.backend import array_namespace, to_numpy
from attnstudio.core.kernels import score_scale, softmax
from attnstudio.core.metrics import row_entropy
from attnstudio.core.transformer import AttentionTrace
from attnstudio.errors import InvalidSetting

# --- Why this score (BertViz's neuron view) ----------------------------------------------------------------


@dataclass(frozen=True)
class ScoreBreakdown:
    """score = (q · k) × scale / temperature; weight = softmax(row of scores)[key]."""

    layer: int
    head: int
    query: int
    key: int
    q: np.ndarray  # (d_k,) the query's vector in this head
    k: np.ndarray  # (d_k,) the key's vector in this head
    product: np.ndarray  # (d_k,) q ⊙ k
    dot: float  # sum(q ⊙ k)
    scale: float  # 1/sqrt(d_k) for scaled_dot, 1 for dot
    temperature: float
    score: float  # dot × scale / temperature: the score the trace holds
    row_scores: np.ndarray  # (n_k,) the query's scores (masked keys are -inf)
    row_weights: np.ndarray  # (n_k,) softmax of row_scores

    @property
    def weight(self) -> float:
        return float(self.row_weights[self.key])

    def formula(self) -> str:
        """The formula with this cell's numbers."""
        return (f"q·k = {self.dot:.4g};  × {self.scale:.4g} / T {self.temperature:g} = {self.score:.4g};  "
                f"softmax → {self.weight:.4f}")


def score_breakdown(trace: AttentionTrace, layer: int, head: int, query: int, key: int, *,
                    score: str = "scaled_dot", temperature: float = 1.0, mask=None) -> ScoreBreakdown:
    """The neuron view's numbers for one cell of one head.  mask: (n_q, n_k) bool or None."""
    if score not in ("scaled_dot", "dot"):
        raise InvalidSetting(f"the q·k breakdown needs a dot-product score, not {score!r}")
    q = to_numpy(trace.queries[head, query]).astype(np.float64)  # (d_k,)
    k = to_numpy(trace.keys[head, key]).astype(np.float64)  # (d_k,)
    product = q * k  # (d_k,)
    scale = score_scale(score, q.shape[0], None)
    row_scores = to_numpy(trace.scores[head, query]).astype(np.float64)  # (n_k,)
    row_mask = None if mask is None else np.asarray(mask)[query]
    row_weights = softmax(row_scores, row_mask)  # (n_k,)
    if row_mask is not None:
        row_scores = np.where(row_mask, row_scores, -math.inf)
    dot = float(product.sum())
    return ScoreBreakdown(layer, head, query, key, q, k, product, dot, scale, float(temperature),
                          dot * scale / temperature, row_scores, row_weights)


# --- Head roles ---------------------------------------------------------------------------------------------

ROLES = {  # name -> what the score measures (for legends and hover text)
    "previous": "attention to the previous token",
    "first": "attention to the first token ([CLS] / BOS sink)",
    "separator": "attention to [SEP] and punctuation",
    "local": "attention within 2 tokens (|i−j| ≤ 2)",
    "broad": "normalised row entropy (1 = uniform)",
    "induction": "attention to the token after the previous copy (repeated random tokens)",
}
# A head "has" a role when its score reaches this (the heads grid's role filter).
ROLE_THRESHOLDS = {"previous": 0.5, "first": 0.5, "separator": 0.5, "local": 0.7, "broad": 0.8, "induction": 0.3}
SEPARATOR_TOKENS = frozenset({"[SEP]", "</s>", "<|endoftext|>", "<|im_end|>", "<eos>"})
WORD_PREFIXES = ("##", "Ġ", "▁")


def is_separator(token: str) -> bool:
    """[SEP]-like tokens and tokens made only of punctuation."""
    if token in SEPARATOR_TOKENS:
        return True
    text = bare_token(token)
    return bool(text) and all(unicodedata.category(char).startswith("P") for char in text)


def bare_token(token: str) -> str:
    """A token without its word-piece marker ("##ing" -> "ing", "Ġbank" -> "bank")."""
    for prefix in WORD_PREFIXES:
        if token.startswith(prefix) and len(token) > len(prefix):
            return token[len(prefix):]
    return token


def _mean_over_queries(per_query, rows):
    """Mean over the query axis of (..., n_q) restricted to the boolean (n_q,) ``rows``; 0 if none."""
    xp = array_namespace(per_query)
    count = int(np.count_nonzero(to_numpy(rows)))
    if count == 0:
        return xp.zeros(per_query.shape[:-1], dtype=per_query.dtype)
    return xp.sum(xp.where(rows, per_query, xp.zeros_like(per_query)), axis=-1) / count


def head_roles(attentions, key_tokens: list[str], mask=None) -> dict[str, np.ndarray]:
    """Role scores in [0, 1] per head.  attentions (layers, heads, n, n) -> {role: (layers, heads)}.

    previous: mean weight on key i−1 (queries 1..n−1); first: mean weight on key 0; separator: mean
    weight on [SEP]/punctuation keys; local: mean weight within |i−j| ≤ 2; broad: mean row entropy
    divided by log(visible keys), over rows that see at least two keys. Induction needs its own
    input, see :func:`induction_scores`.
    """
    xp = array_namespace(attentions)
    n_q, n_k = attentions.shape[-2:]
    if n_q != n_k:
        raise InvalidSetting("head roles need self-attention (square weights)")
    query_index = xp.reshape(xp.arange(n_q), (n_q, 1))
    key_index = xp.reshape(xp.arange(n_k), (1, n_k))
    zeros = xp.zeros_like(attentions)
    previous_weight = xp.sum(xp.where(key_index == query_index - 1, attentions, zeros), axis=-1)  # (L, H, n)
    local_weight = xp.sum(xp.where(xp.abs(key_index - query_index) <= 2, attentions, zeros), axis=-1)
    separators = xp.asarray(np.array([is_separator(token) for token in key_tokens]))  # (n_k,)
    separator_weight = xp.sum(xp.where(separators, attentions, zeros), axis=-1)
    visible = n_k * xp.ones((n_q,)) if mask is None else xp.sum(xp.asarray(mask) * 1.0, axis=-1)  # (n_q,)
    wide_rows = visible >= 2
    entropy = row_entropy(attentions) / xp.log(xp.where(wide_rows, visible, 2.0 * xp.ones_like(visible)))
    all_rows = xp.ones((n_q,), dtype=bool)
    scores = {
        "previous": _mean_over_queries(previous_weight, xp.reshape(query_index, (n_q,)) >= 1),
        "first": _mean_over_queries(attentions[..., 0], all_rows),
        "separator": _mean_over_queries(separator_weight, all_rows),
        "local": _mean_over_queries(local_weight, all_rows),
        "broad": _mean_over_queries(entropy, wide_rows),
    }
    return {name: np.clip(to_numpy(value).astype(np.float64), 0.0, 1.0) for name, value in scores.items()}


def repeated_random_ids(candidate_ids, period: int, seed: int = 0, prefix=()) -> np.ndarray:
    """``prefix`` then ``period`` random ids drawn from ``candidate_ids`` twice over.  -> (len(prefix) + 2 period,)."""
    rng = np.random.default_rng(seed)
    block = rng.choice(np.asarray(candidate_ids, dtype=np.int64), size=period, replace=False)
    return np.concatenate([np.asarray(prefix, dtype=np.int64), block, block])


def induction_scores(attentions, period: int, start: int = 0) -> np.ndarray:
    """Induction score per head on a repeated sequence.  attentions (layers, heads, n, n) -> (layers, heads).

    The tokens at ``start .. start+period`` repeat at ``start+period .. start+2 period``. A query at
    ``start+period+t`` (the t-th token's second copy) scores the weight it puts on ``start+t+1``, the
    token that followed its first copy; the score is the mean over t.
    """
    n = attentions.shape[-1]
    if start + 2 * period > n or period < 1:
        raise InvalidSetting(f"a repeated sequence of period {period} from {start} does not fit {n} tokens")
    queries = np.arange(start + period, start + 2 * period)  # (period,)
    keys = queries - period + 1
    weights = to_numpy(attentions)[..., queries, keys]  # (layers, heads, period)
    return weights.mean(axis=-1).astype(np.float64)


INDUCTION_PERIOD = 25


def measure_induction(forward, parameters, vocab_size: int, *, period: int = INDUCTION_PERIOD, seed: int = 0,
                      prefix=(), **options) -> np.ndarray:
    """Induction scores of a causal model: run ``forward`` on ``prefix`` + a random block + the same block.

    forward: a family's forward pass; prefix: e.g. the BOS id. Random ids avoid the first 100 ids of the
    vocabulary (special and byte tokens).  -> (layers, heads).
    """
    xp = array_namespace(parameters.token_embeddings)
    low = min(100, max(0, vocab_size - 2 * period))
    ids = repeated_random_ids(np.arange(low, vocab_size), min(period, vocab_size - low), seed, prefix)
    attentions = forward(parameters, xp.asarray(ids), **options).attentions()  # (layers, heads, n, n)
    return induction_scores(attentions, min(period, vocab_size - low), len(prefix))


# --- Head finder --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadMatch:
    layer: int
    head: int
    weight: float


def rank_heads(attentions, query: int, key: int) -> list[HeadMatch]:
    """Every (layer, head), highest weight from ``query`` to ``key`` first.  attentions (layers, heads, n_q, n_k)."""
    cell = to_numpy(attentions[..., query, key])  # (layers, heads)
    order = np.argsort(-cell, axis=None, kind="stable")
    heads = cell.shape[1]
    return [HeadMatch(int(index // heads), int(index % heads), float(cell.flat[index])) for index in order]


# --- Same word in two contexts, sentence embeddings ----------------------------------------------------------


def find_word(tokens: list[str], word: str) -> int | None:
    """Index of the first token that spells ``word`` (case-insensitive, word-piece markers ignored)."""
    wanted = word.strip().casefold()
    for index, token in enumerate(tokens):
        if bare_token(token).casefold() == wanted:
            return index
    return None


def cosine_similarity(a, b) -> float:
    """cos(a, b) of two vectors; 0 when either is zero."""
    a = to_numpy(a).astype(np.float64).ravel()
    b = to_numpy(b).astype(np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norms) if norms > 0 else 0.0


def layer_cosines(hidden_a, index_a: int, hidden_b, index_b: int) -> np.ndarray:
    """cos of token ``index_a`` in A and ``index_b`` in B at every layer boundary.

    hidden_a, hidden_b: sequences of (n, d_model) (embeddings, then each layer) -> (layers + 1,).
    """
    return np.array([cosine_similarity(a[index_a], b[index_b]) for a, b in zip(hidden_a, hidden_b, strict=True)])


def sentence_embedding(hidden, valid=None):
    """Mean-pooled, L2-normalised sentence embedding (sentence-transformers' MiniLM).  (n, d) -> (d,).

    valid: (n,) bool, the tokens to pool (padding excluded); None pools every token.
    """
    xp = array_namespace(hidden)
    if valid is None:
        pooled = xp.mean(hidden, axis=0)
    else:
        valid = xp.reshape(xp.asarray(valid), (hidden.shape[0], 1))
        count = max(1, int(np.count_nonzero(to_numpy(valid))))
        pooled = xp.sum(xp.where(valid, hidden, xp.zeros_like(hidden)), axis=0) / count
    norm = xp.sqrt(xp.sum(pooled * pooled))
    return pooled / xp.where(norm > 1e-12, norm, xp.ones_like(norm))


# --- Comparing two texts ------------------------------------------------------------------------------------


def align_tokens(tokens_a: list[str], tokens_b: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions that correspond in A and B: equal runs, and replaced runs of equal length position by position.

    -> (indices into A (m,), indices into B (m,)), increasing.
    """
    matcher = difflib.SequenceMatcher(a=tokens_a, b=tokens_b, autojunk=False)
    pairs_a: list[int] = []
    pairs_b: list[int] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):
            pairs_a.extend(range(a0, a1))
            pairs_b.extend(range(b0, b1))
    return np.array(pairs_a, dtype=np.int64), np.array(pairs_b, dtype=np.int64)


def aligned_difference(weights_a, weights_b, index_a, index_b):
    """B − A on the aligned rows and columns.  (n_a, n_a), (n_b, n_b), (m,), (m,) -> (m, m)."""
    a = to_numpy(weights_a)[np.ix_(index_a, index_a)]
    b = to_numpy(weights_b)[np.ix_(index_b, index_b)]
    return (b - a).astype(np.float32)


def aligned_labels(tokens_a: list[str], tokens_b: list[str], index_a, index_b) -> list[str]:
    """One label per aligned position: the token, or 'a→b' where the texts differ there."""
    return [tokens_a[i] if tokens_a[i] == tokens_b[j] else f"{tokens_a[i]}→{tokens_b[j]}"
            for i, j in zip(index_a, index_b, strict=True)]


# --- Effect of an ablation ------------------------------------------------------------------------------------


def attention_change(baseline, ablated) -> np.ndarray:
    """Mean |Δ weight| per layer.  (layers, heads, n_q, n_k) twice -> (layers,)."""
    baseline, ablated = to_numpy(baseline), to_numpy(ablated)
    return np.abs(ablated.astype(np.float64) - baseline).mean(axis=(1, 2, 3))


def kl_divergence(logits_p, logits_q) -> float:
    """KL(p ‖ q) in nats between softmax(logits_p) and softmax(logits_q).  (vocab,), (vocab,) -> float."""
    p_logits = to_numpy(logits_p).astype(np.float64)
    q_logits = to_numpy(logits_q).astype(np.float64)
    log_p = p_logits - p_logits.max() - np.log(np.exp(p_logits - p_logits.max()).sum())
    log_q = q_logits - q_logits.max() - np.log(np.exp(q_logits - q_logits.max()).sum())
    return float(max(0.0, (np.exp(log_p) * (log_p - log_q)).sum()))
