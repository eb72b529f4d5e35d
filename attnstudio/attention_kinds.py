"""Which attention of an encoder-decoder model the views show: one registry for the session, the engine,
the CLI and the app's selector (Qt-free).

A one-text model has one kind of attention; an encoder-decoder (T5) has three: the encoder's
self-attention over the source, the decoder's causal self-attention over the target, and the
decoder's cross-attention from target rows to source columns.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttentionKind:
    key: str  # what the session stores and the CLI's --attention takes
    label: str  # the selector's text
    caption: str  # what titles and captions say next to a picture of it
    rows: str  # which text the rows (queries) come from: "source" or "target"
    columns: str  # which text the columns (keys) come from
    npz_key: str  # the array `attnstudio compute` writes it as


ATTENTION_KINDS: dict[str, AttentionKind] = {kind.key: kind for kind in (
    AttentionKind("encoder", "Encoder self-attention (source × source)", "encoder self-attention", "source",
                  "source", "attentions"),
    AttentionKind("decoder", "Decoder self-attention (target × target, causal)", "decoder self-attention", "target",
                  "target", "decoder_attentions"),
    AttentionKind("cross", "Cross-attention (target rows × source columns)", "cross-attention", "target", "source",
                  "cross_attentions"),
)}
DEFAULT_ATTENTION_KIND = "encoder"


def attention_kind(key: str) -> AttentionKind:
    return ATTENTION_KINDS[key]
