"""The BERT encoder family: the forward pass in :mod:`attnstudio.core.transformer`, under the family interface."""
from __future__ import annotations

from attnstudio.core.transformer import EncoderParameters, ForwardResult, encode

BertParameters = EncoderParameters  # word/position/type embeddings, post-LayerNorm layers, GELU feed-forward


def forward(parameters: BertParameters, input_ids, **options) -> ForwardResult:
    """Bidirectional encoder; no language-model head, so ``next_logits`` stays None."""
    return encode(parameters, input_ids, **options)
