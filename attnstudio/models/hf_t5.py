"""T5 encoder-decoders from Hugging Face folders (``T5ForConditionalGeneration``: config.json, safetensors,
tokenizer.json) into the t5 family's parameters.

Reads the original T5 (ReLU feed-forward, head tied to the embeddings and rescaled by d_model**-0.5)
and T5 v1.1 / Flan-T5 / mT5 (gated GELU, untied head) by their config: ``feed_forward_proj``,
``tie_word_embeddings`` (and ``scale_decoder_outputs`` where a newer transformers wrote it). Weights are
read only through safetensors, never pickle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attnstudio.core.families.t5 import ACTIVATIONS, T5Attention, T5Layer, T5Parameters
from attnstudio.errors import InvalidSetting, ModelLoadError
from attnstudio.models.hf_decoder import _config_json, _read_tensors, _tensor
from attnstudio.models.loader import PretrainedModel, TokenizedText, _has_surrogates, finite, guarded_encode
from attnstudio.models.tokenizer_gguf import DecoderTokenizer

T5_MODEL_TYPES = ("t5", "mt5")
DEFAULT_MAX_LENGTH = 512  # T5 has no position table; its tokenizers cut texts at 512 tokens
CONFIG_INTEGERS = {"d_model": 65_536, "d_kv": 4096, "d_ff": 1_048_576, "num_heads": 1024, "num_layers": 1024,
                   "vocab_size": 10_000_000}


class T5Tokenizer(DecoderTokenizer):
    """A SentencePiece-style tokenizer.json: the source gets its end-of-text token from the tokenizer's own
    post-processor; the target is the decoder's input, the start token first and no end token."""

    def __init__(self, tokenizer, max_length: int, *, pad_id: int, start_id: int):
        super().__init__(tokenizer, max_length, pad_id=pad_id, bos_id=None, own_special_tokens=True)
        self.start_id = start_id

    def encode_target(self, text: str) -> TokenizedText:
        """The decoder's teacher-forced inputs: the start token, then ``text``'s tokens.  ids (n_tgt,)."""
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
        ids = [self.start_id]
        if text.strip():
            ids += list(guarded_encode(lambda t: self._tokenizer.encode(t, add_special_tokens=False), text).ids)
        truncated_from = None
        if len(ids) > self.max_length:
            truncated_from, ids = len(ids), ids[:self.max_length]
        return TokenizedText([self.readable_token(i) for i in ids], np.asarray(ids, dtype=np.int64), truncated_from)

    def decode_token(self, token_id: int) -> str:
        """What appending the token adds to a text: SentencePiece's '▁' is a space ('▁cat' -> ' cat')."""
        piece = self._tokenizer.id_to_token(int(token_id)) or ""
        return piece.replace("\u2581", " ")

    def readable_token(self, token_id: int) -> str:
        """The token as labels show it: its text, or SentencePiece's own '▁' for a piece that is only a space
        (a blank label would name nothing)."""
        text = self.decode_token(token_id)
        if text and not text.strip():
            return self._tokenizer.id_to_token(int(token_id))
        return text or str(token_id)


def _config(folder: Path) -> dict:
    config = _config_json(folder)
    if not isinstance(config, dict):
        raise ModelLoadError(f"{folder / 'config.json'} is not a JSON object")
    config = dict(config)
    config.setdefault("num_decoder_layers", config.get("num_layers"))
    for key, most in {**CONFIG_INTEGERS, "num_decoder_layers": CONFIG_INTEGERS["num_layers"]}.items():
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ModelLoadError(f"{folder / 'config.json'} has no valid {key!r} (an integer from 1 to {most})")
    for key, default, most in (("relative_attention_num_buckets", 32, 65_536),
                               ("relative_attention_max_distance", 128, 1_048_576)):
        value = config.setdefault(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= most:
            raise ModelLoadError(f"{folder / 'config.json'} has no valid {key!r} (an integer from 2 to {most})")
    if config["relative_attention_max_distance"] <= config["relative_attention_num_buckets"] // 4:
        raise ModelLoadError("config.json: relative_attention_max_distance must exceed a quarter of the buckets")
    eps = config.setdefault("layer_norm_epsilon", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ModelLoadError("config.json has no valid 'layer_norm_epsilon' (a small positive number)")
    projection = config.setdefault("feed_forward_proj", "relu")
    parts = str(projection).split("-")
    gated = parts[0] == "gated" and len(parts) == 2
    activation = "gelu_new" if projection == "gated-gelu" else parts[-1]
    if len(parts) > 2 or len(parts) == 2 and not gated or activation not in ACTIVATIONS:
        raise ModelLoadError(f"feed_forward_proj {str(projection)[:40]!r} is not supported; attnstudio runs "
                             f"{', '.join(ACTIVATIONS)} and their gated-… forms")
    config["_activation"], config["_gated"] = activation, gated
    tied = config.get("tie_word_embeddings", True) is not False
    config["_tied"] = tied
    config["_scale_output"] = bool(config.get("scale_decoder_outputs", tied))
    pad = config.get("pad_token_id", 0)
    start = config.get("decoder_start_token_id", pad)
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < config["vocab_size"]:
        raise ModelLoadError("config.json has no valid 'decoder_start_token_id'")
    config["_start"], config["_pad"] = start, pad if isinstance(pad, int) else 0
    config.setdefault("max_position_embeddings", int(config.get("n_positions", DEFAULT_MAX_LENGTH) or
                                                      DEFAULT_MAX_LENGTH))
    return config


def _parameters(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> T5Parameters:
    d_model, d_ff, heads, d_kv = config["d_model"], config["d_ff"], config["num_heads"], config["d_kv"]
    inner = heads * d_kv

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return finite(_tensor(tensors, name, shape, folder, "T5ForConditionalGeneration"), folder.name, name)

    def linear(name: str, rows: int, cols: int) -> np.ndarray:  # stored (out, in); used as x @ w
        return get(name + ".weight", (rows, cols)).T

    def attention(prefix: str) -> T5Attention:
        return T5Attention.from_projections(*(linear(prefix + part, inner, d_model) for part in ("q", "k", "v")),
                                            linear(prefix + "o", d_model, inner))

    def feed_forward(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        if config["_gated"]:
            w_in = np.concatenate([linear(prefix + "wi_0", d_ff, d_model), linear(prefix + "wi_1", d_ff, d_model)],
                                  axis=1)  # (d_model, 2 d_ff)
        else:
            w_in = linear(prefix + "wi", d_ff, d_model)
        return np.ascontiguousarray(w_in), np.ascontiguousarray(linear(prefix + "wo", d_model, d_ff))

    def stack(name: str, count: int, decoder: bool) -> list[T5Layer]:
        layers = []
        for index in range(count):
            prefix = f"{name}.block.{index}.layer."
            ff = f"{prefix}{2 if decoder else 1}."
            w_in, w_out = feed_forward(ff + "DenseReluDense.")
            layers.append(T5Layer(
                self_norm=get(prefix + "0.layer_norm.weight", (d_model,)),
                self_attention=attention(prefix + "0.SelfAttention."),
                ff_norm=get(ff + "layer_norm.weight", (d_model,)), ff_in_weight=w_in, ff_out_weight=w_out,
                cross_norm=get(prefix + "1.layer_norm.weight", (d_model,)) if decoder else None,
                cross_attention=attention(prefix + "1.EncDecAttention.") if decoder else None))
        return layers

    vocab, buckets = config["vocab_size"], config["relative_attention_num_buckets"]
    embedding_name = "shared.weight" if "shared.weight" in tensors else "encoder.embed_tokens.weight"
    embeddings = get(embedding_name, (vocab, d_model))
    return T5Parameters(
        token_embeddings=embeddings,
        encoder_layers=stack("encoder", config["num_layers"], decoder=False),
        encoder_final_norm=get("encoder.final_layer_norm.weight", (d_model,)),
        decoder_layers=stack("decoder", config["num_decoder_layers"], decoder=True),
        decoder_final_norm=get("decoder.final_layer_norm.weight", (d_model,)),
        encoder_relative_bias=get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                  (buckets, heads)),
        decoder_relative_bias=get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                  (buckets, heads)),
        unembedding=None if config["_tied"] else np.ascontiguousarray(get("lm_head.weight", (vocab, d_model)).T),
        num_heads=heads, head_dim=d_kv, num_buckets=buckets, max_distance=config["relative_attention_max_distance"],
        layer_norm_eps=float(config["layer_norm_epsilon"]), activation=config["_activation"], gated=config["_gated"],
        decoder_start_id=config["_start"], scale_decoder_output=config["_scale_output"])


def _tokenizer(folder: Path, config: dict) -> T5Tokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no tokenizer.json (a SentencePiece spiece.model alone is not read)")
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415

        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - the library raises several types for damaged files
        raise ModelLoadError(f"cannot read {path}: {str(error)[:160]}") from None
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
    if largest >= config["vocab_size"]:
        raise ModelLoadError(f"the tokenizer in {folder.name} has ids up to {largest} but the model has "
                             f"{config['vocab_size']} embeddings: they belong to different models")
    return T5Tokenizer(tokenizer, int(config["max_position_embeddings"]), pad_id=config["_pad"],
                       start_id=config["_start"])


def load_hf_t5(folder: Path) -> PretrainedModel:
    """A ``T5ForConditionalGeneration`` folder -> its model (t5 family parameters and tokenizer).

    Raises ModelLoadError (one sentence) for anything wrong with the folder."""
    try:
        config = _config(folder)
        parameters = _parameters(_read_tensors(folder), config, folder)
        tokenizer = _tokenizer(folder, config)
    except (ModelLoadError, InvalidSetting):
        raise
    except MemoryError:
        raise ModelLoadError(f"the model in {folder} does not fit in memory") from None
    except Exception as error:  # noqa: BLE001 - a folder can be damaged in more ways than we check for
        raise ModelLoadError(f"cannot load the model in {folder}: {type(error).__name__}: {str(error)[:160]}") from None
    return PretrainedModel(folder.name, folder, config, parameters, tokenizer)
