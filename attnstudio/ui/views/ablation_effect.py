"""What switching heads off did to a decoder's output, read from a result and its baseline (the same session
without the ablation): the top next tokens before and after, KL(before ‖ after), and the probabilities the
shown candidates had before."""
from __future__ import annotations

import numpy as np

from attnstudio.core.analysis import kl_divergence
from attnstudio.core.backend import to_numpy


def next_token_shift(result) -> str:
    """'Next token before: …; after: … (KL … nats).' for an ablated decoder result, else ''."""
    lines = next_token_lines(result)
    if not lines:
        return ""
    return f"Next token before: {lines[0]}; after: {lines[1]} (KL {lines[2]} nats)."


def next_token_lines(result) -> list[str]:
    """[top-5 before, top-5 after, KL(before ‖ after) in nats] for an ablated decoder result, else []."""
    before = result.baseline
    if before is None or before.forward.next_logits is None or not before.next_tokens or not result.next_tokens:
        return []

    def top(tokens) -> str:
        return ", ".join(f"{token.label!r} {token.probability:.0%}" for token in tokens[:5])

    divergence = kl_divergence(before.forward.next_logits, result.forward.next_logits)
    return [top(before.next_tokens), top(result.next_tokens), f"{divergence:.4f}"]


def probabilities_before(result) -> np.ndarray | None:
    """(len(result.next_tokens),) the probability each shown candidate had without the ablation, or None."""
    before = result.baseline
    if before is None or before.forward.next_logits is None or not result.next_tokens:
        return None
    logits = to_numpy(before.forward.next_logits).astype(np.float64)  # (vocab,)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return probabilities[[token.token_id for token in result.next_tokens]]
