"""Model families: one module each, one small interface, one registry.

A family is a parameters dataclass (what a model file is turned into, laid out for
``x @ w``) and a forward pass over it that returns a :class:`ForwardResult`: one
:class:`AttentionTrace` per layer, the hidden states at each layer boundary and,
for models with a language-model head, the next-token logits. Loading files into
parameters lives in ``attnstudio.models``; the engine looks the family up here from
the parameters it was given and never asks which one it runs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnstudio.core.families import bert, gpt2, llama, t5
from attnstudio.core.transformer import AttentionTrace, ForwardResult
from attnstudio.errors import InvalidSetting


@dataclass(frozen=True)
class ModelFamily:
    """What the rest of the app needs to know about one kind of model."""

    name: str
    description: str  # a few words for menus and captions
    parameters_type: type
    causal: bool  # True: token i attends only to tokens 0..i (the model's own mask)
    has_head: bool  # True: the forward pass returns next-token logits
    # forward(parameters, input_ids (n,), *, heads, mask, score, scale, seed, num_layers, pair_ids, pair_mask,
    #         ablation) -- ablation: heads switched off (core.ablation), applied between softmax and values
    forward: Callable[..., ForwardResult]
    # logit_lens(parameters, hidden_states, position) -> (layers, vocab): each layer's prediction; None: no head
    logit_lens: Callable[..., Any] | None = None
    # extend(parameters, past ForwardResult, input_ids (n,), *, mask, score, scale, seed, num_layers, rows): the forward
    # pass reusing a causal model's first m rows (a prefix cache); None: every edit recomputes everything
    extend: Callable[..., ForwardResult] | None = None
    # True: forward also takes target_ids (the decoder's inputs, start token first) and returns a
    # t5.Seq2SeqForwardResult: the encoder's traces plus the decoder's self- and cross-attention
    encoder_decoder: bool = False


FAMILIES: dict[str, ModelFamily] = {
    family.name: family for family in (
        ModelFamily("bert", "encoder (BERT)", bert.BertParameters, causal=False, has_head=False, forward=bert.forward),
        ModelFamily("llama", "decoder (Llama, Mistral, Qwen2)", llama.LlamaParameters, causal=True, has_head=True,
                    forward=llama.forward, logit_lens=llama.logit_lens, extend=llama.extend),
        ModelFamily("gpt2", "decoder (GPT-2)", gpt2.Gpt2Parameters, causal=True, has_head=True,
                    forward=gpt2.forward, logit_lens=gpt2.logit_lens),
        ModelFamily("t5", "encoder-decoder (T5)", t5.T5Parameters, causal=False, has_head=True, forward=t5.forward,
                    encoder_decoder=True),
    )
}


def family_named(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InvalidSetting(f"unknown model family {name!r}; attnstudio runs {', '.join(FAMILIES)}") from None


def family_of(parameters: Any) -> ModelFamily:
    """The family whose parameters dataclass ``parameters`` is."""
    for family in FAMILIES.values():
        if isinstance(parameters, family.parameters_type):
            return family
    raise InvalidSetting(f"no model family takes {type(parameters).__name__}")


__all__ = ["FAMILIES", "AttentionTrace", "ForwardResult", "ModelFamily", "family_named", "family_of"]
