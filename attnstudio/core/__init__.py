"""Pure compute: attention kernels, masks, backends, the encoder forward pass. Never imports Qt."""
from attnstudio.core.backend import Backend, array_namespace, cupy_status, resolve_backend, to_numpy
from attnstudio.core.kernels import (
    attention,
    attention_naive,
    attention_scores,
    attention_sliding_window,
    attention_tiled,
    softmax,
)
from attnstudio.core.masks import (
    MaskSpec,
    build_mask,
    causal_mask,
    cells_mask,
    padding_mask,
    parse_mask_spec,
    sliding_window_mask,
)
from attnstudio.core.scores import SCORE_FUNCTIONS, SCORES

__all__ = [
    "SCORE_FUNCTIONS", "SCORES", "attention", "attention_naive", "attention_scores", "attention_sliding_window",
    "attention_tiled", "softmax", "Backend", "array_namespace", "cupy_status", "resolve_backend", "to_numpy",
    "MaskSpec", "build_mask", "causal_mask", "cells_mask", "padding_mask", "parse_mask_spec",
    "sliding_window_mask",
]
