"""What a decoder predicts after the last token: the softmax of its logits, the most likely first."""
from __future__ import annotations

import numpy as np

TOP_K = 10


def top_next_tokens(logits, *, k: int = TOP_K, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(ids (k,), probabilities (k,)) of the ``k`` most likely next tokens, most likely first.

    logits: (vocab,) on the host. probabilities = softmax(logits / temperature), over the whole vocabulary.
    """
    logits = np.asarray(logits, dtype=np.float64) / temperature
    k = min(k, logits.shape[0])
    ids = np.argpartition(-logits, k - 1)[:k]
    ids = ids[np.argsort(-logits[ids], kind="stable")]
    shifted = np.exp(logits - logits.max())  # (vocab,)
    return ids, shifted[ids] / shifted.sum()
