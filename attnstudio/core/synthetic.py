"""A one-layer synthetic attention model with user-chosen heads, d_k, d_model and seed.

Token vectors come from a pretrained embedding table (so similar words stay
similar), projected to d_model by a seeded random matrix, with sinusoidal
positions added. W_Q, W_K, W_V are seeded Gaussians. Every random number is drawn
on the host with NumPy, so one seed gives the same result on every backend.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from attnstudio.core.ablation import Ablation, ablate_heads, check_ablation_fits
from attnstudio.core.backend import array_namespace
from attnstudio.core.kernels import attention_scores, softmax
from attnstudio.core.transformer import AttentionTrace, ForwardResult, merge_heads, split_heads
from attnstudio.errors import InvalidSetting
from attnstudio.limits import LIMITS

SYNTHETIC_SETTINGS = ("heads", "d_k", "d_model", "seed")


def check_synthetic_setting(name: str, value) -> int:
    """``value`` as an int within the limits for ``name``, or InvalidSetting saying what is allowed."""
    return LIMITS[name].check(value)


def check_synthetic_width(heads: int, d_k: int) -> None:
    """The projections are (d_model, heads * d_k): their width bounds the time and memory of a compute."""
    limit = LIMITS["synthetic_width"]
    if heads * d_k > limit.high:
        raise InvalidSetting(f"heads × d_k must be at most {limit.high} (got {heads} × {d_k} = {heads * d_k}): "
                             f"use fewer heads or a smaller d_k")


@dataclass(frozen=True)
class SyntheticConfig:
    heads: int = 4
    d_k: int = 16
    d_model: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in SYNTHETIC_SETTINGS:
            check_synthetic_setting(name, getattr(self, name))
        check_synthetic_width(self.heads, self.d_k)


@dataclass
class SyntheticParameters:
    projection: np.ndarray  # (d_embed, d_model)
    w_q: np.ndarray  # (d_model, heads * d_k)
    w_k: np.ndarray
    w_v: np.ndarray


@functools.lru_cache(maxsize=2)
def synthetic_parameters(config: SyntheticConfig, d_embed: int) -> SyntheticParameters:
    """Seeded float32 parameters; the draw order is fixed so a seed always means the same model.

    Remembered for the last few configurations: typing into a synthetic session pays only the forward pass.
    """
    rng = np.random.default_rng(config.seed)
    width = config.heads * config.d_k

    def draw(rows: int, cols: int) -> np.ndarray:
        matrix = (rng.standard_normal((rows, cols)) / math.sqrt(rows)).astype(np.float32)
        matrix.flags.writeable = False  # shared by every compute that uses this configuration
        return matrix

    return SyntheticParameters(draw(d_embed, config.d_model), draw(config.d_model, width),
                               draw(config.d_model, width), draw(config.d_model, width))


def sinusoidal_positions(n: int, d_model: int) -> np.ndarray:
    """The Transformer paper's position encoding.  -> (n, d_model) float32."""
    positions = np.arange(n, dtype=np.float64)[:, None]
    frequencies = np.exp(-math.log(10000.0) * (np.arange(0, d_model, 2) / max(d_model, 1)))
    encoding = np.zeros((n, d_model))
    encoding[:, 0::2] = np.sin(positions * frequencies)
    encoding[:, 1::2] = np.cos(positions * frequencies)[:, : d_model // 2]
    return encoding.astype(np.float32)


def synthetic_inputs(embedding_table, ids, parameters: SyntheticParameters):
    """Token vectors: embeddings projected to d_model, standardised, plus positions.  -> (n, d_model)."""
    xp = array_namespace(embedding_table)
    x = xp.take(embedding_table, ids, axis=0) @ xp.asarray(parameters.projection)
    x = (x - xp.mean(x, axis=-1, keepdims=True)) / (xp.std(x, axis=-1, keepdims=True) + 1e-6)
    d_model = parameters.projection.shape[1]
    return x + xp.asarray(sinusoidal_positions(ids.shape[0], d_model))


def synthetic_forward(embedding_table, ids, config: SyntheticConfig, *, pair_ids=None, mask=None,
                      score="scaled_dot", scale=None, ablation: Ablation | None = None) -> ForwardResult:
    """One attention layer over ``ids`` (n,) (or from ``ids`` to ``pair_ids`` for cross-attention)."""
    xp = array_namespace(embedding_table)
    check_ablation_fits(ablation, 1, config.heads)
    parameters = synthetic_parameters(config, embedding_table.shape[1])
    x_q = synthetic_inputs(embedding_table, ids, parameters)
    x_kv = x_q if pair_ids is None else synthetic_inputs(embedding_table, pair_ids, parameters)
    q = split_heads(x_q @ xp.asarray(parameters.w_q), config.heads)  # (heads, n_q, d_k)
    k = split_heads(x_kv @ xp.asarray(parameters.w_k), config.heads)  # (heads, n_k, d_k)
    v = split_heads(x_kv @ xp.asarray(parameters.w_v), config.heads)  # (heads, n_k, d_k)
    scores = attention_scores(q, k, score=score, scale=scale, seed=config.seed)  # (heads, n_q, n_k)
    weights = softmax(scores, mask)
    weights, context = ablate_heads(weights, v, ablation.heads_in(0) if ablation else (),
                                    ablation.mode if ablation else "zero", mask)  # context (heads, n_q, d_k)
    return ForwardResult([AttentionTrace(q, k, v, scores, weights, context)], [x_q, merge_heads(context)])
