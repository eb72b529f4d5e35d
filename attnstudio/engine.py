"""From a :class:`Session` to attention results: tokenize, mask, run the chosen model.

Shared by the CLI, the exporters and the app's compute worker. Loaded models and
their parameters on each backend are cached, so typing only pays for the forward pass.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import head_roles, measure_induction, sentence_embedding
from attnstudio.core.backend import Backend, configure_host_allocator, resolve_backend, to_numpy
from attnstudio.core.families import family_of
from attnstudio.core.kernels import score_scale
from attnstudio.core.masks import MaskSpec, build_mask, causal_mask
from attnstudio.core.metrics import attention_rollout, head_entropy
from attnstudio.core.next_token import top_next_tokens
from attnstudio.core.prefix_cache import PrefixCache
from attnstudio.core.synthetic import SyntheticConfig, synthetic_forward
from attnstudio.core.transformer import EncoderParameters, ForwardResult
from attnstudio.errors import AttnStudioError, InvalidSetting
from attnstudio.fileio import read_regular_file
from attnstudio.limits import LIMITS
from attnstudio.models.loader import (
    BUILTIN_MODEL,
    MAX_CONFIG_BYTES,
    PretrainedModel,
    TokenizedText,
    resolve_model_folder,
)
from attnstudio.models.registry import load_model_cached
from attnstudio.session import SYNTHETIC, Session


@dataclass(frozen=True)
class NextToken:
    """One candidate for the token after the text."""

    token_id: int
    text: str  # what appending it adds to the text (' cat')
    label: str  # how the views write it (line breaks and tabs made visible)
    probability: float  # softmax of the logits at temperature 1, over the whole vocabulary


@dataclass
class ComputeResult:
    """What one compute produced, with arrays still on their backend, and the session it was computed from.

    Every title, caption and hover text next to a picture of this result reads ``session`` (and the
    layer/head the result model clamped when it published it), never the session being edited now.
    """

    session: Session  # a copy, as it was when the compute started
    query_tokens: list[str]
    key_tokens: list[str]
    forward: ForwardResult
    backend: Backend
    mask: np.ndarray | None  # (n_q, n_k) bool, True = may attend
    model_name: str
    heads: int
    d_k: int
    elapsed_s: float
    notices: list[str] = field(default_factory=list)
    cross_attention: bool = False
    compare: ComputeResult | None = None  # the same settings on the session's compare_text (text B)
    baseline: ComputeResult | None = None  # the same session without its ablation (with its own compare)
    causal_model: bool = False  # the model's own causal mask was applied (decoders), besides the session's
    next_tokens: list[NextToken] = field(default_factory=list)  # decoders: the most likely next tokens
    # decoders: logit_lens(position) -> each layer's most likely next token after that position
    logit_lens: Callable[[int], list[NextToken]] | None = field(default=None, repr=False)
    kv_heads: int | None = None  # grouped-query models: key/value heads, each shared by heads / kv_heads query heads
    induction: np.ndarray | None = field(default=None, repr=False)  # causal models: (layers, heads) scores
    _host_attentions: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_layers(self) -> int:
        return len(self.forward.traces)

    def attentions(self) -> np.ndarray:
        """(layers, heads, n_q, n_k) float32 on the host (copied once, then shared by every view)."""
        if self._host_attentions is None:
            self._host_attentions = np.ascontiguousarray(to_numpy(self.forward.attentions()), dtype=np.float32)
        return self._host_attentions

    @cached_property
    def head_entropy(self) -> np.ndarray:
        """(layers, heads) mean row entropy, computed once (the compute worker does it off the GUI thread)."""
        return head_entropy(self.attentions())

    @cached_property
    def rollout(self) -> np.ndarray | None:
        """(n, n) attention rollout across layers, or None for cross-attention; computed once."""
        return None if self.cross_attention else attention_rollout(self.attentions())

    @cached_property
    def head_roles(self) -> dict[str, np.ndarray] | None:
        """{role: (layers, heads)} scores (see core.analysis.head_roles), or None for cross-attention.

        Causal models add "induction", measured by the engine on a repeated random sequence.
        """
        if self.cross_attention:
            return None
        roles = head_roles(self.attentions(), self.key_tokens, self.mask)
        if self.induction is not None:
            roles["induction"] = self.induction
        return roles

    @cached_property
    def sentence_embedding(self) -> np.ndarray:
        """(d_model,) mean-pooled, L2-normalised final hidden states over the non-padding tokens."""
        valid = np.array([token != "[PAD]" for token in self.query_tokens])
        final = to_numpy(self.forward.hidden_states[-1])
        return to_numpy(sentence_embedding(final, valid))

    def precompute_views(self) -> None:
        """Everything the views need from the (layers, heads, n, n) attention weights, so drawing stays cheap."""
        self.attentions()
        _ = self.head_entropy, self.rollout, self.head_roles  # cached_property: computed here, once
        for companion in (self.compare, self.baseline):
            if companion is not None:
                companion.precompute_views()

    def step(self, layer: int, name: str) -> np.ndarray:
        """One step of a layer's attention (queries, keys, values, scores, weights, context) on the host."""
        return to_numpy(getattr(self.forward.traces[layer], name))


def valid_head_counts(model: str) -> tuple[tuple[int, ...], int | None]:
    """The head counts ``model`` can run with, and its own count (None for the synthetic model).

    An encoder's heads re-split its width, so the divisors of d_model (within the limits) work; a decoder
    whose key/value heads are shared keeps its own count.
    """
    low, high = LIMITS["heads"].low, LIMITS["heads"].high
    if model == SYNTHETIC:
        return tuple(range(low, high + 1)), None
    width, own, resplits = _model_heads(model)
    if not resplits:
        return (own,), own
    return tuple(count for count in range(low, high + 1) if width % count == 0), own


@lru_cache(maxsize=32)
def _model_heads(model: str) -> tuple[int, int, bool]:
    """(d_model, heads, whether the heads can be re-split) of a pretrained model; an encoder's come from its
    config.json (no parameters loaded on the GUI thread), anything else from the loaded model."""
    try:
        raw = read_regular_file(resolve_model_folder(model) / "config.json", MAX_CONFIG_BYTES, "config.json")
        config = json.loads(raw.decode("utf-8"))
        width, heads = config["hidden_size"], config["num_attention_heads"]
        if config.get("model_type", "bert") == "bert" and isinstance(width, int) and isinstance(heads, int) \
                and width > 0 and heads > 0:
            return width, heads, True
    except (OSError, ValueError, KeyError, TypeError, RecursionError, AttnStudioError):  # the loader says why
        pass
    loaded = load_model_cached(model)
    return loaded.parameters.d_model, loaded.num_heads, family_of(loaded.parameters).name == "bert"


def check_heads(model: str, heads: int | None) -> None:
    """Raise InvalidSetting unless ``heads`` (None: the model's own) suits ``model``."""
    if heads is None or model == SYNTHETIC:
        return
    counts, own = valid_head_counts(model)
    if heads not in counts:
        width, _, resplits = _model_heads(model)
        if not resplits:
            raise InvalidSetting(f"this model keeps its own {own} heads (its key/value heads are shared); "
                                 f"{heads} heads cannot be split from it")
        raise InvalidSetting(f"{heads} heads do not divide the model width {width}; choose one of "
                             f"{', '.join(map(str, counts))}")


def _parameters_on(parameters: EncoderParameters, backend: Backend) -> EncoderParameters:
    """A copy of ``parameters`` with every array moved to ``backend``."""
    def move(value: Any):
        if isinstance(value, np.ndarray):
            return backend.asarray(value)
        if isinstance(value, tuple):
            return tuple(move(item) for item in value)
        if isinstance(value, list):
            return [move(item) for item in value]
        if dataclasses.is_dataclass(value):
            moved = {field.name: move(getattr(value, field.name)) for field in dataclasses.fields(value)}
            return dataclasses.replace(value, **moved)
        return value
    return move(parameters)


class Engine:
    """Runs sessions; caches models and their parameters per backend. Safe to call from one worker at a time."""

    def __init__(self):
        configure_host_allocator()  # a third of the CPU forward pass was page faults without it
        self._parameters: dict[tuple[str, str], EncoderParameters] = {}
        self._lock = threading.Lock()
        self._prefix = PrefixCache()

    def model(self, session: Session) -> PretrainedModel:
        """The pretrained model a session uses (the built-in one supplies the synthetic mode's vocabulary)."""
        return load_model_cached(BUILTIN_MODEL if session.is_synthetic else session.model)

    def parameters(self, model: PretrainedModel, backend: Backend) -> EncoderParameters:
        key = (str(model.folder), backend.name)
        with self._lock:
            if key not in self._parameters:
                on_host = backend.name == "numpy"
                self._parameters[key] = model.parameters if on_host else _parameters_on(model.parameters, backend)
            return self._parameters[key]

    def compute(self, session: Session) -> ComputeResult:
        """Tokenize, build the mask and run the session's model.  Raises AttnStudioError subclasses."""
        session = dataclasses.replace(session.validate())  # the result keeps its own copy
        backend = resolve_backend(session.backend)
        model = self.model(session)
        started = time.perf_counter()
        notices: list[str] = []
        queries = _tokenize(model, session.text, "text", notices)
        keys = _tokenize(model, session.pair_text, "second text", notices) if session.is_cross_attention else None
        mask_spec = session.mask

        # Key padding: pad the key sequence with [PAD] tokens and hide them from every query.
        valid_keys = None
        if mask_spec.has("padding"):
            if keys is None:
                valid_keys = len(queries)
                queries = _padded(queries, mask_spec.padded_length(len(queries)), model)
            else:
                valid_keys = len(keys)
                keys = _padded(keys, mask_spec.padded_length(len(keys)), model)
        key_seq = keys if keys is not None else queries
        mask_host = build_mask(mask_spec, len(queries), len(key_seq), valid_keys=valid_keys)
        family = family_of(model.parameters)
        if family.causal and not session.is_synthetic:  # the model's own mask; the user's combine with it
            own = causal_mask(len(queries), len(key_seq))
            mask_host = own if mask_host is None else own & mask_host
        mask = None if mask_host is None else backend.asarray(mask_host)
        parameters = self.parameters(model, backend)
        table = parameters.word_embeddings
        query_ids = backend.asarray(queries.ids)
        key_ids = None if keys is None else backend.asarray(keys.ids)

        if session.is_synthetic:
            config = SyntheticConfig(heads=session.heads or 4, d_k=session.d_k, d_model=session.d_model,
                                     seed=session.seed)
            scale = score_scale(session.score, config.d_k, None) / session.temperature
            forward = synthetic_forward(table, query_ids, config, pair_ids=key_ids, mask=mask,
                                        score=session.score, scale=scale, ablation=session.ablation)
            heads, d_k, name = config.heads, config.d_k, "synthetic"
        else:
            heads = session.heads or model.num_heads
            if parameters.d_model % heads:
                raise InvalidSetting(f"{heads} heads do not divide the model width {parameters.d_model}")
            d_k = getattr(parameters, "head_dim", None) or parameters.d_model // heads
            scale = score_scale(session.score, d_k, None) / session.temperature
            pair_mask = None
            if keys is not None and valid_keys is not None and valid_keys < len(keys):
                pair_mask = backend.asarray(build_mask(mask_spec, len(keys), len(keys), valid_keys=valid_keys))
            if family.extend is not None and key_ids is None and not session.ablation:  # causal: reuse kept rows
                forward = self._prefix.forward(family, parameters, queries.ids, query_ids, mask_host=mask_host,
                                               mask=mask, heads=heads, score=session.score, scale=scale,
                                               seed=session.seed)
            else:
                forward = family.forward(parameters, query_ids, heads=heads, mask=mask, score=session.score,
                                         scale=scale, seed=session.seed, pair_ids=key_ids,
                                         pair_mask=pair_mask, ablation=session.ablation)
            name = model.name
        backend.synchronize()
        elapsed = time.perf_counter() - started
        result = ComputeResult(session, queries.tokens, key_seq.tokens, forward, backend, mask_host, name, heads, d_k,
                               elapsed, notices, cross_attention=keys is not None,
                               causal_model=family.causal and not session.is_synthetic,
                               next_tokens=_next_tokens(forward, model),
                               logit_lens=_lens_for(family, parameters, model, forward),
                               kv_heads=_kv_heads(parameters, heads, session))
        if result.causal_model:  # induction heads show on a repeated random sequence
            bos = getattr(model.tokenizer, "bos_id", None)
            prefix = () if bos is None else (bos,)
            result.induction = measure_induction(
                family.forward, parameters, parameters.token_embeddings.shape[0], prefix=prefix,
                ablation=session.ablation)
        if session.compare_text.strip() and keys is None:  # text B with the same settings (not for pairs)
            result.compare = self.compute(dataclasses.replace(session, text=session.compare_text, compare_text=""))
        if session.ablation:  # the unablated run, so views can show the effect
            result.baseline = self.compute(dataclasses.replace(session, ablation=Ablation()))
        return result


def _kv_heads(parameters, heads: int, session: Session) -> int | None:
    """How many key/value heads the query heads share, where fewer than the query heads (GQA)."""
    kv_heads = getattr(parameters, "num_kv_heads", None)
    return kv_heads if not session.is_synthetic and kv_heads is not None and kv_heads < heads else None


def _next_tokens(forward: ForwardResult, model: PretrainedModel) -> list[NextToken]:
    if forward.next_logits is None or not hasattr(model.tokenizer, "decode_token"):
        return []
    ids, probabilities = top_next_tokens(to_numpy(forward.next_logits))
    return [NextToken(int(i), model.tokenizer.decode_token(i), model.tokenizer.readable_token(i), float(p))
            for i, p in zip(ids, probabilities, strict=True)]


def _lens_for(family, parameters, model: PretrainedModel, forward: ForwardResult):
    if family.logit_lens is None or forward.next_logits is None or not hasattr(model.tokenizer, "decode_token"):
        return None

    def lens(position: int) -> list[NextToken]:
        logits = to_numpy(family.logit_lens(parameters, forward.hidden_states, position))  # (layers, vocab)
        tops = []
        for row in logits:
            (token_id,), (probability,) = top_next_tokens(row, k=1)
            tops.append(NextToken(int(token_id), model.tokenizer.decode_token(token_id),
                                  model.tokenizer.readable_token(token_id), float(probability)))
        return tops
    return lens


def mask_caption(result: ComputeResult, spec: MaskSpec) -> str:
    """The mask ``result`` was computed with, in words: a decoder's own causal mask, then the session's."""
    chosen = spec.describe()
    if not result.causal_model:
        return chosen
    return "causal (the model's own)" + ("" if chosen == MaskSpec().describe() else f" + {chosen}")


def _tokenize(model: PretrainedModel, text: str, what: str, notices: list[str]) -> TokenizedText:
    if not text.strip():
        raise InvalidSetting(f"the {what} is empty: type a sentence")
    tokenized = model.tokenizer.encode(text)
    if tokenized.truncated_from is not None:
        notices.append(f"The {what} has {tokenized.truncated_from} tokens; the model takes "
                       f"{model.tokenizer.max_length}, so it was truncated.")
    return tokenized


def _padded(tokenized: TokenizedText, length: int, model: PretrainedModel) -> TokenizedText:
    length = min(length, model.tokenizer.max_length)
    extra = length - len(tokenized)
    if extra <= 0:
        return tokenized
    ids = np.concatenate([tokenized.ids, np.full(extra, model.tokenizer.pad_id, dtype=np.int64)])
    return TokenizedText(tokenized.tokens + [model.tokenizer.pad_token] * extra, ids, tokenized.truncated_from)

