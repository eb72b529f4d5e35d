"""An encoder-decoder compute: a source and a target text through one forward pass, three kinds of attention.

The session's ``text`` is the source and ``target_text`` what the decoder has produced so far (fed
teacher-forced after its start token). One forward pass gives the encoder's self-attention, the
decoder's causal self-attention and the cross-attention from target to source; each becomes a
:class:`ComputeResult` of its own (its tokens on each axis, its mask, its captions), all sharing the
next-token prediction after the last target token, so every view shows whichever kind the session
picks without computing again.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from attnstudio.attention_kinds import ATTENTION_KINDS
from attnstudio.core.ablation import Ablation
from attnstudio.core.backend import Backend, to_numpy
from attnstudio.core.families import family_of
from attnstudio.core.masks import causal_mask
from attnstudio.core.transformer import ForwardResult
from attnstudio.engine import ComputeResult, Engine, _next_tokens, _tokenize
from attnstudio.errors import InvalidSetting
from attnstudio.models.loader import PretrainedModel
from attnstudio.session import Session


def compute_seq2seq(engine: Engine, session: Session, model: PretrainedModel, parameters,
                    backend: Backend) -> ComputeResult:
    """Run ``session`` (source = text, target = target_text) through an encoder-decoder model.

    Returns the result of the session's attention kind; ``result.kinds`` holds all three.
    Raises InvalidSetting for what the model cannot take (a second text, a mask of the user's, a score function).
    """
    family = family_of(parameters)
    if session.is_cross_attention:
        raise InvalidSetting("an encoder-decoder model takes a source and a target text: clear the pair text "
                             "and type the target instead")
    if session.mask.kinds or session.mask.blocked_cells:
        raise InvalidSetting("an encoder-decoder model uses its own masks (the decoder's causal one); "
                             "choose the mask 'none'")
    if session.heads not in (None, parameters.num_heads):
        raise InvalidSetting(f"this model has {parameters.num_heads} heads; its heads cannot be re-split")
    started = time.perf_counter()
    notices: list[str] = []
    source = _tokenize(model, session.text, "source text", notices)
    target = model.tokenizer.encode_target(session.target_text)
    if target.truncated_from is not None:
        notices.append(f"The target has {target.truncated_from} tokens; the model takes "
                       f"{model.tokenizer.max_length}, so it was truncated.")
    forward = family.forward(parameters, backend.asarray(source.ids), target_ids=backend.asarray(target.ids),
                             score=session.score, scale=1.0 / session.temperature, ablation=session.ablation)
    backend.synchronize()
    elapsed = time.perf_counter() - started
    next_tokens = functools.cache(functools.partial(_next_tokens, forward, model))  # read once, by any kind
    tokens = {"source": source.tokens, "target": target.tokens}
    n_tgt = len(target.tokens)
    parts = {  # kind -> (traces, hidden states, mask, position bias)
        "encoder": (forward.traces, forward.hidden_states, None, forward.encoder_position_bias),
        "decoder": (forward.decoder_traces, forward.decoder_hidden_states, causal_mask(n_tgt, n_tgt),
                    forward.decoder_position_bias),
        "cross": (forward.cross_traces, forward.decoder_hidden_states, None, None),
    }
    kinds: dict[str, ComputeResult] = {}
    for key, kind in ATTENTION_KINDS.items():
        traces, hidden_states, mask, bias = parts[key]
        kinds[key] = ComputeResult(
            session, tokens[kind.rows], tokens[kind.columns], ForwardResult(traces, hidden_states, forward.next_logits),
            backend, mask, f"{model.name} · {kind.caption}", parameters.num_heads, parameters.head_dim, elapsed,
            list(notices), cross_attention=kind.rows != kind.columns, causal_model=key == "decoder",
            next_tokens_of=next_tokens, axis_titles=(f"query ({kind.rows})", f"key ({kind.columns})"),
            attention_kind=key, plain_model_name=model.name, kinds=kinds, target_tokens=target.tokens,
            position_bias=None if bias is None else np.asarray(to_numpy(bias), dtype=np.float32))
    if session.ablation:  # the unablated pass, so views can show the effect (kind by kind)
        baseline = engine.compute(dataclasses.replace(session, ablation=Ablation()))
        for key, result in kinds.items():
            result.baseline = baseline.for_kind(key)
    return kinds[session.attention_kind]
