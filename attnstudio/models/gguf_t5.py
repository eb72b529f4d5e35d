"""T5 encoder-decoders from GGUF files (``general.architecture`` = ``t5``), as llama.cpp's ``convert_hf_to_gguf.py``
writes them (class ``T5Model``), into the t5 family's parameters and a SentencePiece tokenizer.

Tensor names are gguf-py's ``MODEL_ARCH.T5`` ones (``enc.blk.{i}.attn_q``, ``dec.blk.{i}.cross_attn_k``, ...), every
matrix in PyTorch's (out, in) layout. llama.cpp decides the feed-forward the same way read here: a layer with
``ffn_gate`` is T5 v1.1's gated GELU (tanh approximation), one without it the original ReLU. The head is tied
when the file has no ``output.weight`` (or one equal to ``token_embd.weight``: a tied head the converter copied);
then, as in transformers, the final decoder state is rescaled by d_model**-0.5 first. The relative position
tables are layer 0's (``attn_rel_b``), shared by every layer; files with a table in every layer (UMT5) are refused.
llama.cpp stores no ``relative_attention_max_distance``: it uses 128, the value of every released T5, and so does
this loader unless the file carries ``MAX_DISTANCE_KEY`` (written by benchmarks/make_tiny_t5_gguf.py for its tiny
checkpoints, whose distances are shorter).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attnstudio.core.families.t5 import T5Attention, T5Layer, T5Parameters
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf_tensors import tensor_getter
from attnstudio.models.hf_t5 import T5Tokenizer
from attnstudio.models.loader import finite
from attnstudio.models.tokenizer_gguf import unigram_tokenizer_from_fields

LLAMA_CPP_MAX_DISTANCE = 128  # llama.cpp's llama_relative_position_bucket: "max_distance = 128"
MAX_DISTANCE_KEY = "attnstudio.t5.relative_attention_max_distance"  # attnstudio's own key; llama.cpp has none
DEFAULT_BUCKETS = 32


def t5_config(number, fields: dict, config: dict, path: Path) -> None:
    """The T5-only header values (llama.cpp's ``t5.*`` keys) into ``config``; ``number(key, default)`` reads one."""
    config["num_decoder_layers"] = number("decoder_block_count", config["num_layers"])
    config["head_dim"] = number("attention.key_length", config["d_model"] // config["num_heads"])
    if number("attention.value_length", config["head_dim"]) != config["head_dim"]:
        raise ModelLoadError(f"{path.name}: its attention.value_length differs from attention.key_length; "
                             f"T5 uses one width for both")
    config["num_buckets"] = number("attention.relative_buckets_count", DEFAULT_BUCKETS)
    config["decoder_start_id"] = _token_id(fields, "t5.decoder_start_token_id",
                                           _token_id(fields, "tokenizer.ggml.padding_token_id", 0, path), path)
    distance = fields.get(MAX_DISTANCE_KEY, LLAMA_CPP_MAX_DISTANCE)
    if isinstance(distance, bool) or not isinstance(distance, int) or distance <= config["num_buckets"] // 4:
        raise ModelLoadError(f"{path.name}: {MAX_DISTANCE_KEY} must be an integer above a quarter of the buckets")
    config["max_distance"] = distance
    if not config["decoder_start_id"] < config["vocab_size"]:
        raise ModelLoadError(f"{path.name}: t5.decoder_start_token_id {config['decoder_start_id']} is not a token")


def _token_id(fields: dict, key: str, default: int, path: Path) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelLoadError(f"{path.name}: {key} must be a token id (a whole number from 0)")
    return value


def build_t5(tensors: dict[str, np.ndarray], config: dict, path: Path) -> T5Parameters:
    """llama.cpp's T5 tensors (float32, (out, in)) -> T5Parameters laid out for ``x @ w``."""
    d_model, d_ff, heads, d_kv = config["d_model"], config["d_ff"], config["num_heads"], config["head_dim"]
    inner, buckets = heads * d_kv, config["num_buckets"]

    take = tensor_getter(tensors, path)

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return finite(take(name, shape), path.name, name)

    def linear(name: str, rows: int, cols: int) -> np.ndarray:  # stored (out, in); used as x @ w
        return get(name + ".weight", (rows, cols)).T

    def attention(prefix: str) -> T5Attention:
        return T5Attention.from_projections(*(linear(prefix + part, inner, d_model) for part in ("_q", "_k", "_v")),
                                            linear(prefix + "_o", d_model, inner))

    gated = "enc.blk.0.ffn_gate.weight" in tensors

    def stack(prefix: str, count: int, decoder: bool) -> list[T5Layer]:
        layers = []
        for index in range(count):
            block = f"{prefix}.blk.{index}."
            if index > 0 and block + "attn_rel_b.weight" in tensors:
                raise ModelLoadError(f"{path.name} has a relative position table in every layer (UMT5); "
                                     f"attnstudio runs T5, whose layers share the first layer's table")
            if (block + "ffn_gate.weight" in tensors) != gated:
                raise ModelLoadError(f"{path.name}: {block}ffn_gate is {'missing' if gated else 'unexpected'}; "
                                     f"every layer must use the same feed-forward")
            up = linear(block + "ffn_up", d_ff, d_model)  # (d_model, d_ff)
            w_in = np.concatenate([linear(block + "ffn_gate", d_ff, d_model), up], axis=1) if gated else up
            layers.append(T5Layer(
                self_norm=get(block + "attn_norm.weight", (d_model,)), self_attention=attention(block + "attn"),
                ff_norm=get(block + "ffn_norm.weight", (d_model,)), ff_in_weight=np.ascontiguousarray(w_in),
                ff_out_weight=np.ascontiguousarray(linear(block + "ffn_down", d_model, d_ff)),
                cross_norm=get(block + "cross_attn_norm.weight", (d_model,)) if decoder else None,
                cross_attention=attention(block + "cross_attn") if decoder else None))
        return layers

    vocab = config["vocab_size"]
    embeddings = get("token_embd.weight", (vocab, d_model))
    parameters = T5Parameters(
        token_embeddings=embeddings,
        encoder_layers=stack("enc", config["num_layers"], decoder=False),
        encoder_final_norm=get("enc.output_norm.weight", (d_model,)),
        decoder_layers=stack("dec", config["num_decoder_layers"], decoder=True),
        decoder_final_norm=get("dec.output_norm.weight", (d_model,)),
        encoder_relative_bias=get("enc.blk.0.attn_rel_b.weight", (buckets, heads)),
        decoder_relative_bias=get("dec.blk.0.attn_rel_b.weight", (buckets, heads)),
        unembedding=None, num_heads=heads, head_dim=d_kv, num_buckets=buckets, max_distance=config["max_distance"],
        layer_norm_eps=config["norm_eps"], activation="gelu_new" if gated else "relu", gated=gated,
        decoder_start_id=config["decoder_start_id"], scale_decoder_output=True)
    tensors.pop("dec.blk.0.cross_attn_rel_b.weight", None)  # some checkpoints keep it; T5 never uses it
    output = tensors.pop("output.weight", None)
    if output is not None and not np.array_equal(output, embeddings):  # untied: its own head, no rescale
        if output.shape != embeddings.shape:
            raise ModelLoadError(f"{path.name}: output.weight has shape {output.shape}, expected {embeddings.shape}")
        parameters.unembedding = np.ascontiguousarray(output.T)  # (d_model, vocab)
        parameters.scale_decoder_output = False
    return parameters


def t5_tokenizer(fields: dict, config: dict) -> T5Tokenizer:
    """The SentencePiece unigram of ``tokenizer.ggml.*`` as transformers' T5 tokenizer builds it."""
    tokenizer = unigram_tokenizer_from_fields(fields)
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
    if largest >= config["vocab_size"]:
        raise ModelLoadError(f"the GGUF tokenizer has ids up to {largest} but the model has {config['vocab_size']} "
                             f"embeddings")
    pad = fields.get("tokenizer.ggml.padding_token_id", config["decoder_start_id"])  # checked by t5_config
    return T5Tokenizer(tokenizer, config["context_length"], pad_id=pad, start_id=config["decoder_start_id"])
