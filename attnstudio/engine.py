"""From a :class:`Session` to attention results: tokenize, mask, run the chosen model.

Shared by the CLI, the exporters and the app's compute worker. Loaded models and
their parameters on each backend are cached, so typing only pays for the forward pass.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import INDUCTION_PERIOD, head_roles, measure_induction, sentence_embedding
from attnstudio.core.backend import Backend, configure_host_allocator, resolve_backend, to_numpy
from attnstudio.core.families import family_of
from attnstudio.core.flow import attention_flow, check_flow_input
from attnstudio.core.kernels import score_scale
from attnstudio.core.long_attention import LongAttention, LongRecorder, MaskRule, is_long
from attnstudio.core.long_forward import LONG_FORWARDS
from attnstudio.core.masks import MaskSpec, build_mask, causal_mask
from attnstudio.core.metrics import attention_rollout, head_entropy
from attnstudio.core.next_token import top_next_tokens
from attnstudio.core.parallel import blas_threads_for_rows
from attnstudio.core.prefix_cache import PrefixCache
from attnstudio.core.synthetic import SyntheticConfig, synthetic_forward
from attnstudio.core.transformer import EncoderParameters, ForwardResult
from attnstudio.errors import InvalidSetting
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
    # decoders: () -> the most likely next tokens, read through ``next_tokens`` (computed when first asked)
    next_tokens_of: Callable[[], list[NextToken]] | None = field(default=None, repr=False)
    # decoders: logit_lens(position) -> each layer's most likely next token after that position
    logit_lens: Callable[[int], list[NextToken]] | None = field(default=None, repr=False)
    kv_heads: int | None = None  # grouped-query models: key/value heads, each shared by heads / kv_heads query heads
    axis_titles: tuple[str, str] = ("query", "key")  # what the rows and the columns of its matrices are
    # encoder-decoder models: this result is one attention kind (attnstudio.attention_kinds) of one forward pass;
    # ``kinds`` holds every kind's result of that pass (this one among them), so views switch without computing
    attention_kind: str | None = None
    plain_model_name: str | None = None  # the model's name without the attention kind model_name adds
    kinds: dict[str, ComputeResult] | None = field(default=None, repr=False)
    target_tokens: list[str] | None = None  # the decoder's inputs (start token first); next tokens follow them
    position_bias: np.ndarray | None = field(default=None, repr=False)  # (heads, n_q, n_k) added to every layer's
    # scores (T5's relative position bias; None where the model has none, as in cross-attention)
    # a long document (core.long_attention): queries, keys and row statistics instead of every weight
    long: LongAttention | None = field(default=None, repr=False)
    # causal models: () -> (layers, heads) induction scores, measured once per model, when head roles are asked for
    induction_of: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    _host_attentions: np.ndarray | None = field(default=None, repr=False)
    _flow: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)  # see attention_flow
    _flow_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @cached_property
    def next_tokens(self) -> list[NextToken]:
        """Decoders: the most likely next tokens, most likely first (empty for a model without a head)."""
        return [] if self.next_tokens_of is None else self.next_tokens_of()

    @cached_property
    def induction(self) -> np.ndarray | None:
        """Causal models: (layers, heads) induction scores on a repeated random sequence; else None."""
        return None if self.induction_of is None else self.induction_of()

    @property
    def num_layers(self) -> int:
        return self.long.num_layers if self.long is not None else len(self.forward.traces)

    def for_kind(self, kind: str) -> ComputeResult:
        """The result of attention ``kind`` from the same forward pass (itself for a one-text model)."""
        return self if self.kinds is None else self.kinds.get(kind, self)

    def attentions(self) -> np.ndarray:
        """(layers, heads, n_q, n_k) float32 on the host (copied once, then shared by every view).

        A long document keeps no such array: its views ask ``long`` for the regions they draw."""
        if self.long is not None:
            raise InvalidSetting(f"this text has {len(self.query_tokens)} tokens: its weights are computed "
                                 f"region by region, not kept whole")
        if self._host_attentions is None:
            self._host_attentions = np.ascontiguousarray(to_numpy(self.forward.attentions()), dtype=np.float32)
        return self._host_attentions

    def head_weights(self, layer: int, head: int) -> np.ndarray:
        """(n_q, n_k) float32 weights of one head on the host, without stacking every layer (live typing
        shows one head; the (layers, heads, n, n) stack of a 512-token text is 280 MB)."""
        if self._host_attentions is not None:
            return self._host_attentions[layer, head]
        return np.asarray(to_numpy(self.forward.traces[layer].head_weights(head)), dtype=np.float32)

    @cached_property
    def head_entropy(self) -> np.ndarray:
        """(layers, heads) mean row entropy, computed once (the compute worker does it off the GUI thread)."""
        return self.long.head_entropy() if self.long is not None else head_entropy(self.attentions())

    @cached_property
    def rollout(self) -> np.ndarray | None:
        """(n, n) attention rollout across layers, or None for cross-attention and long documents; computed once."""
        dense = not self.cross_attention and self.long is None  # rollout multiplies every (n, n) matrix
        return attention_rollout(self.attentions()) if dense else None

    def flow_refusal(self) -> str | None:
        """Why attention flow is not computed for this result (one sentence), or None when it is."""
        try:
            check_flow_input(self.attentions(), cross_attention=self.cross_attention)
        except InvalidSetting as refusal:
            return str(refusal)
        return None

    def flow_ready(self) -> bool:
        return self._flow is not None

    def attention_flow(self, progress=None, cancelled=None) -> np.ndarray:
        """(n, n) maximum flow from each output token to each input token (core.flow), computed once.

        A second caller waits for a computation in progress rather than repeating it. Raises InvalidSetting
        where flow is refused (cross-attention, too many tokens) and FlowCancelled when ``cancelled()`` says so.
        """
        with self._flow_lock:
            if self._flow is None:
                check_flow_input(self.attentions(), cross_attention=self.cross_attention)
                self._flow = attention_flow(self.attentions(), progress=progress, cancelled=cancelled)
            return self._flow

    @cached_property
    def head_roles(self) -> dict[str, np.ndarray] | None:
        """{role: (layers, heads)} scores (see core.analysis.head_roles), or None for cross-attention and long
        documents (the roles read every weight).

        Causal models add "induction", measured by the engine on a repeated random sequence.
        """
        if self.cross_attention or self.long is not None:
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

    def precompute_views(self, view: str | None = None) -> None:
        """What the views need from the (layers, heads, n, n) attention weights, so drawing stays cheap.

        view: only what that view reads (the one on screen; the others' are computed when they are shown);
        None: everything. An encoder-decoder result does it for each attention kind of its pass; a long
        document keeps no weights: its first picture is the shown head's block summaries.
        """
        names = VIEW_SUMMARIES.get(view, ()) if view is not None else tuple(SUMMARIES)
        kinds = [self] + [other for other in (self.kinds or {}).values() if other is not self]  # T5: every kind
        for result in kinds:
            if result.long is not None:
                result.long.prepare(min(result.session.layer, result.num_layers - 1),
                                    min(result.session.head, result.heads - 1))
            for name in names:
                if not (name == "attentions" and result.long is not None):
                    SUMMARIES[name](result)
            for companion in (result.compare, result.baseline):
                if companion is not None and all(companion is not kind for kind in kinds):
                    companion.precompute_views(view)

    def has_summary(self, name: str) -> bool:
        """Whether the summary ``name`` (a key of SUMMARIES) is computed already (a long document keeps no
        whole weights: there is nothing to compute for "attentions")."""
        if name == "attentions":
            return self._host_attentions is not None or self.long is not None
        return SUMMARY_ATTRIBUTES[name] in self.__dict__  # where cached_property keeps its value

    def missing_summaries(self, view: str) -> tuple[str, ...]:
        """The summaries ``view`` reads that are not computed yet (see VIEW_SUMMARIES)."""
        missing = tuple(name for name in VIEW_SUMMARIES.get(view, ()) if not self.has_summary(name))
        companions = [c for c in (self.compare, self.baseline) if c is not None and c.missing_summaries(view)]
        return missing + (("companions",) if companions else ())

    def weight_cells(self) -> int:
        """layers x heads x n_q x n_k: how much every whole-model summary reads."""
        return self.num_layers * self.heads * len(self.query_tokens) * len(self.key_tokens)

    def step(self, layer: int, name: str) -> np.ndarray:
        """One step of a layer's attention (queries, keys, values, scores, weights, context) on the host."""
        return to_numpy(getattr(self.forward.traces[layer], name))


# The summaries the worker can precompute (name -> the result's attribute), and which views read them (the
# others read one head or one layer).
SUMMARY_ATTRIBUTES = {"attentions": "attentions", "entropy": "head_entropy", "rollout": "rollout",
                      "roles": "head_roles", "next_tokens": "next_tokens"}
SUMMARIES: dict[str, Callable[[ComputeResult], Any]] = {
    "attentions": ComputeResult.attentions,
    **{name: (lambda result, attribute=attribute: getattr(result, attribute))
       for name, attribute in SUMMARY_ATTRIBUTES.items() if name != "attentions"},
}
VIEW_SUMMARIES: dict[str, tuple[str, ...]] = {
    "heads": ("attentions", "entropy", "roles"), "model": ("attentions", "entropy", "roles"),
    "multi_lines": ("attentions",), "rollout": ("attentions", "rollout"), "flow": ("attentions", "rollout"),
    "why": ("attentions",), "compare": ("attentions",), "next_token": ("next_tokens",),
    "logit_lens": ("next_tokens",),
}


def valid_head_counts(model: str) -> tuple[tuple[int, ...], int | None]:
    """The head counts ``model`` can run with, and its own count (None for the synthetic model).

    An encoder's heads re-split its width, so the divisors of d_model (within the limits) work; a decoder
    whose key/value heads are shared keeps its own count. ``((), None)`` while that is not known yet: a model
    without a BERT config.json that has not been loaded (it loads in a worker thread, never here).
    """
    low, high = LIMITS["heads"].low, LIMITS["heads"].high
    if model == SYNTHETIC:
        return tuple(range(low, high + 1)), None
    shape = _model_heads(model)
    if shape is None:
        return (), None
    width, own, resplits = shape
    if not resplits:
        return (own,), own
    return tuple(count for count in range(low, high + 1) if width % count == 0), own


_MODEL_HEADS: dict[str, tuple[int, int, bool]] = {}


def _model_heads(model: str) -> tuple[int, int, bool] | None:
    """(d_model, heads, whether the heads can be re-split) of a pretrained model, or None while unknown.

    An encoder's come from its config.json, anything else from the model once it is loaded: this runs on the
    GUI thread, which must never wait for a model to load (seconds for a GGUF read for the first time).
    """
    if model in _MODEL_HEADS:
        return _MODEL_HEADS[model]
    shape = _encoder_heads(model)
    if shape is None:
        loaded = load_model_cached.loaded(model)
        if loaded is None:
            return None
        shape = loaded.parameters.d_model, loaded.num_heads, family_of(loaded.parameters).name == "bert"
    _MODEL_HEADS[model] = shape
    return shape


def _encoder_heads(model: str) -> tuple[int, int, bool] | None:
    """(d_model, heads, True) from a BERT folder's config.json; None for anything else. A folder that is no model
    (no config.json, or one that cannot be read at all: a FIFO, a device) raises its one-line ModelLoadError."""
    if model != BUILTIN_MODEL and not Path(model).expanduser().is_dir():
        return None  # a .gguf file, a repo id or an Ollama name: known once loaded
    folder = resolve_model_folder(model)
    raw = read_regular_file(folder / "config.json", MAX_CONFIG_BYTES, "config.json")
    try:
        config = json.loads(raw.decode("utf-8"))
        width, heads = config["hidden_size"], config["num_attention_heads"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if config.get("model_type", "bert") == "bert" and isinstance(width, int) and isinstance(heads, int) \
            and width > 0 and heads > 0:
        return width, heads, True
    return None


def check_heads(model: str, heads: int | None) -> None:
    """Raise InvalidSetting unless ``heads`` (None: the model's own) suits ``model``. While the model's heads are
    not known yet (see :func:`valid_head_counts`) the count is let through: the forward pass refuses it then."""
    if heads is None or model == SYNTHETIC:
        return
    counts, own = valid_head_counts(model)
    if counts and heads not in counts:
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
        self._induction_cache: dict[tuple, np.ndarray] = {}  # (model, backend, ablation) -> (layers, heads)

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

    def compute(self, session: Session, *, long: bool | None = None,
                progress: Callable[[int, int], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> ComputeResult:
        """Tokenize, build the mask and run the session's model.  Raises AttnStudioError subclasses.

        long: keep queries, keys and row statistics instead of every weight (None: when the text is past
        the dense threshold and the model's family has a long forward pass); progress(layers done, layers)
        and cancelled() serve the long pass (it raises long_attention.Cancelled).
        """
        session = dataclasses.replace(session.validate())  # the result keeps its own copy
        backend = resolve_backend(session.backend)
        model = self.model(session)
        if not session.is_synthetic and family_of(model.parameters).encoder_decoder:
            from attnstudio.seq2seq import compute_seq2seq  # noqa: PLC0415 - it builds on this module

            return compute_seq2seq(self, session, model, self.parameters(model, backend), backend)
        started = time.perf_counter()
        notices: list[str] = []
        queries = _tokenize(model, session.text, "text", notices)
        keys = _tokenize(model, session.pair_text, "second text", notices) if session.is_cross_attention else None
        family = family_of(model.parameters)
        if long is None:
            long = (is_long(len(queries)) and not session.is_synthetic and keys is None
                    and family.name in LONG_FORWARDS)
        if long:
            return self._compute_long(session, model, family, queries, notices, started,
                                      progress=progress, cancelled=cancelled)
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
                with blas_threads_for_rows(len(queries)):
                    forward = family.forward(parameters, query_ids, heads=heads, mask=mask, score=session.score,
                                             scale=scale, seed=session.seed, pair_ids=key_ids,
                                             pair_mask=pair_mask, ablation=session.ablation)
            name = model.name
        backend.synchronize()
        elapsed = time.perf_counter() - started
        result = ComputeResult(session, queries.tokens, key_seq.tokens, forward, backend, mask_host, name, heads, d_k,
                               elapsed, notices, cross_attention=keys is not None,
                               causal_model=family.causal and not session.is_synthetic,
                               next_tokens_of=functools.partial(_next_tokens, forward, model),
                               logit_lens=_lens_for(family, parameters, model, forward),
                               kv_heads=_kv_heads(parameters, heads, session))
        if result.causal_model:  # induction heads show on a repeated random sequence (measured when asked for)
            result.induction_of = functools.partial(self._induction_scores, family, model, parameters, backend,
                                                    session.ablation)
        if session.compare_text.strip() and keys is None:  # text B with the same settings (not for pairs)
            result.compare = self.compute(dataclasses.replace(session, text=session.compare_text, compare_text=""))
        if session.ablation:  # the unablated run, so views can show the effect
            result.baseline = self.compute(dataclasses.replace(session, ablation=Ablation()))
        return result

    def _compute_long(self, session: Session, model: PretrainedModel, family, queries: TokenizedText,
                      notices: list[str], started: float, *, progress, cancelled) -> ComputeResult:
        """The long-document pass (core.long_forward): no (n, n) array is made, not even the mask."""
        long_forward = LONG_FORWARDS.get(family.name)
        if long_forward is None:
            raise InvalidSetting(f"long documents run on {', '.join(LONG_FORWARDS)} models; this is a "
                                 f"{family.description}: use a text of at most {LIMITS['dense_tokens'].high} tokens")
        if session.is_synthetic or session.is_cross_attention:
            raise InvalidSetting("long documents need one text and a pretrained model")
        if session.compare_text.strip():
            notices.append("Text B is not compared for long documents.")
        if session.backend not in ("auto", "numpy"):
            notices.append("Long documents run on the CPU (NumPy).")
        # no key padding: a long text is longer than any padding length (LIMITS["pad_to"])
        rule = MaskRule.from_spec(session.mask, causal_model=family.causal)
        parameters = self.parameters(model, resolve_backend("numpy"))
        recorder = LongRecorder(len(queries), rule, len(parameters.layers), progress=progress, cancelled=cancelled)
        head_dim = getattr(parameters, "head_dim", None) or parameters.d_model // (session.heads or model.num_heads)
        forward, long = long_forward(parameters, np.asarray(queries.ids), recorder, heads=session.heads,
                                     score=session.score, ablation=session.ablation,
                                     scale=score_scale(session.score, head_dim, None) / session.temperature)
        heads = long.heads
        notices.append(f"Long document ({len(queries)} tokens): weights are computed for what is drawn.")
        return ComputeResult(session, queries.tokens, queries.tokens, forward, resolve_backend("numpy"), None,
                             model.name, heads, long.layers[0].queries.shape[-1], time.perf_counter() - started,
                             notices, causal_model=family.causal,
                             next_tokens_of=functools.partial(_next_tokens, forward, model),
                             kv_heads=_kv_heads(parameters, heads, session), long=long)

    def _induction_scores(self, family, model: PretrainedModel, parameters, backend: Backend,
                          ablation: Ablation) -> np.ndarray:
        """(layers, heads) induction scores: they depend on the model and its ablation, never on the text,
        so each is measured once (a forward pass of its own that live typing must not repeat)."""
        key = (str(model.folder), model.name, backend.name, ablation)
        with self._lock:
            cached = self._induction_cache.get(key)
        if cached is None:
            bos = getattr(model.tokenizer, "bos_id", None)
            with blas_threads_for_rows(2 * INDUCTION_PERIOD + 1):
                cached = measure_induction(family.forward, parameters, parameters.token_embeddings.shape[0],
                                           prefix=() if bos is None else (bos,), ablation=ablation)
            cached.flags.writeable = False  # shared by every result of this model
            with self._lock:
                if len(self._induction_cache) >= MAX_INDUCTION_ENTRIES:
                    self._induction_cache.pop(next(iter(self._induction_cache)))
                self._induction_cache[key] = cached
        return cached


MAX_INDUCTION_ENTRIES = 32


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
    if family.logit_lens is None or not forward.has_next_logits() or not hasattr(model.tokenizer, "decode_token"):
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

