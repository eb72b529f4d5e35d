"""GGUF tensors -> a model family's parameters: one builder per GGUF architecture, under llama.cpp's tensor names.

The names and layouts are those llama.cpp's ``convert_hf_to_gguf.py`` writes: every matrix as PyTorch's
``nn.Linear`` (out, in) (GPT-2's Conv1D weights are transposed on the way in), and the query and key
projections of ``llama`` permuted into interleaved pairs for llama.cpp's RoPE. ``qwen2`` uses the NeoX
(rotate-half) RoPE, so its projections are stored as Hugging Face has them; GPT-2 has no RoPE at all.
``t5`` (encoder-decoder, SentencePiece vocabulary) lives in :mod:`attnstudio.models.gguf_t5`.
Each architecture also names how its header is read (``configure``) and its tokenizer is built.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnstudio.core.families.gpt2 import Gpt2Layer, Gpt2Parameters
from attnstudio.core.families.llama import LlamaLayer, LlamaParameters
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf_t5 import build_t5, t5_config, t5_tokenizer
from attnstudio.models.gguf_tensors import tensor_getter
from attnstudio.models.tokenizer_gguf import DecoderTokenizer, tokenizer_json_from_fields, tokenizer_settings


def reverse_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's RoPE permutation of a q/k projection (out, in): per head, rows (pairs, 2) -> (2, pairs)."""
    pairs = weight.shape[0] // heads // 2
    return weight.reshape(heads, pairs, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _llama_like(tensors: dict[str, np.ndarray], config: dict, path: Path, *, permuted: bool,
                biased: bool) -> LlamaParameters:
    """Llama (q/k permuted for llama.cpp's RoPE) and Qwen2 (rotate-half as stored, q/k/v biases)."""
    heads, kv_heads, head_dim, d_model = config["num_heads"], config["num_kv_heads"], config["head_dim"], \
        config["d_model"]
    get = tensor_getter(tensors, path)
    unpermute = reverse_permute if permuted else (lambda weight, _heads: weight)
    embeddings = get("token_embd.weight", (config["vocab_size"], d_model))
    layers = []
    for index in range(config["num_layers"]):
        prefix = f"blk.{index}."
        q = unpermute(get(prefix + "attn_q.weight", (heads * head_dim, d_model)), heads)
        k = unpermute(get(prefix + "attn_k.weight", (kv_heads * head_dim, d_model)), kv_heads)
        v = get(prefix + "attn_v.weight", (kv_heads * head_dim, d_model))
        bias = None
        if biased:
            bias = np.concatenate([get(prefix + "attn_q.bias", (heads * head_dim,)),
                                   get(prefix + "attn_k.bias", (kv_heads * head_dim,)),
                                   get(prefix + "attn_v.bias", (kv_heads * head_dim,))])
        gate = get(prefix + "ffn_gate.weight", (config["d_ff"], d_model))
        up = get(prefix + "ffn_up.weight", (config["d_ff"], d_model))
        layers.append(LlamaLayer(
            attention_norm=get(prefix + "attn_norm.weight", (d_model,)),
            qkv_weight=np.ascontiguousarray(np.concatenate([q, k, v], axis=0).T),  # (d_model, q + k + v)
            attention_out_weight=np.ascontiguousarray(get(prefix + "attn_output.weight",
                                                          (d_model, heads * head_dim)).T),
            mlp_norm=get(prefix + "ffn_norm.weight", (d_model,)),
            gate_up_weight=np.ascontiguousarray(np.concatenate([gate, up], axis=0).T),  # (d_model, 2 d_ff)
            down_weight=np.ascontiguousarray(get(prefix + "ffn_down.weight", (d_model, config["d_ff"])).T),
            qkv_bias=bias,
        ))
    output = tensors.pop("output.weight", None)
    if output is not None and output.shape != embeddings.shape:
        raise ModelLoadError(f"{path.name}: output.weight has shape {output.shape}, expected {embeddings.shape}")
    factors = tensors.pop("rope_freqs.weight", None)
    if factors is not None and factors.shape != (head_dim // 2,):
        raise ModelLoadError(f"{path.name}: rope_freqs.weight has shape {factors.shape}, expected {(head_dim // 2,)}")
    return LlamaParameters(
        token_embeddings=embeddings, layers=layers, final_norm=get("output_norm.weight", (d_model,)),
        unembedding=None if output is None else np.ascontiguousarray(output.T),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, rope_base=config["rope_base"],
        rms_norm_eps=config["norm_eps"], context_length=config["context_length"],
        rope_frequency_factors=factors)


def _gpt2(tensors: dict[str, np.ndarray], config: dict, path: Path) -> Gpt2Parameters:
    """GPT-2: learned positions, LayerNorms with biases, the fused q/k/v projection, a head tied to the embeddings."""
    d_model, d_ff, heads = config["d_model"], config["d_ff"], config["num_heads"]
    if config["num_kv_heads"] != heads or config["head_dim"] * heads != d_model:
        raise ModelLoadError(f"{path.name}: a GPT-2 has {heads} heads of width {d_model // heads}, each with its own "
                             f"keys and values; the header says otherwise")
    get = tensor_getter(tensors, path)

    def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return get(prefix + ".weight", (d_model,)), get(prefix + ".bias", (d_model,))

    def linear(prefix: str, out: int, into: int) -> tuple[np.ndarray, np.ndarray]:
        """(in, out) weight laid out for x @ w, and its (out,) bias."""
        return np.ascontiguousarray(get(prefix + ".weight", (out, into)).T), get(prefix + ".bias", (out,))

    embeddings = get("token_embd.weight", (config["vocab_size"], d_model))
    layers = []
    for index in range(config["num_layers"]):
        prefix = f"blk.{index}."
        qkv_weight, qkv_bias = linear(prefix + "attn_qkv", 3 * d_model, d_model)
        out_weight, out_bias = linear(prefix + "attn_output", d_model, d_model)
        up_weight, up_bias = linear(prefix + "ffn_up", d_ff, d_model)
        down_weight, down_bias = linear(prefix + "ffn_down", d_model, d_ff)
        layers.append(Gpt2Layer(
            attention_norm=norm(prefix + "attn_norm"), qkv_weight=qkv_weight, qkv_bias=qkv_bias,
            attention_out_weight=out_weight, attention_out_bias=out_bias, mlp_norm=norm(prefix + "ffn_norm"),
            up_weight=up_weight, up_bias=up_bias, down_weight=down_weight, down_bias=down_bias))
    output = tensors.pop("output.weight", None)  # llama.cpp's converter writes GPT-2's tied head as a copy
    if output is not None and not np.array_equal(output, embeddings):
        raise ModelLoadError(f"{path.name}: its output.weight differs from token_embd.weight; attnstudio runs "
                             f"GPT-2 with its head tied to the token embeddings")
    return Gpt2Parameters(
        token_embeddings=embeddings,
        position_embeddings=get("position_embd.weight", (config["context_length"], d_model)), layers=layers,
        final_norm=norm("output_norm"), num_heads=heads, layer_norm_eps=config["norm_eps"])


def _decoder_config(number, fields: dict, config: dict, path: Path) -> None:
    """A decoder's attention layout: query heads sharing key/value heads, RoPE pairs."""
    del fields
    config["rope_base"] = number("rope.freq_base", 10000.0, kind=float)
    config["num_kv_heads"] = number("attention.head_count_kv", config["num_heads"])
    config["head_dim"] = number("attention.key_length", config["d_model"] // config["num_heads"])
    if config["num_heads"] % config["num_kv_heads"] or config["head_dim"] % 2:
        raise ModelLoadError(f"{path.name}: {config['num_heads']} query heads cannot share "
                             f"{config['num_kv_heads']} key/value heads of width {config['head_dim']}")


def _decoder_tokenizer(fields: dict, config: dict) -> DecoderTokenizer:
    return DecoderTokenizer.from_json(tokenizer_json_from_fields(fields),
                                      tokenizer_settings(fields, config["context_length"]))


@dataclass(frozen=True)
class GgufArchitecture:
    name: str  # general.architecture
    norm_eps_key: str  # the header key of the normalisation epsilon, under the architecture's prefix
    build: Callable[[dict, dict, Path], object]  # (tensors, config, path) -> the family's parameters
    # (number, fields, config, path): the architecture's own header values into config; number(key, default, kind)
    configure: Callable[..., None] = _decoder_config
    tokenizer: Callable[[dict, dict], object] = _decoder_tokenizer  # (fields, config) -> the model's tokenizer


ARCHITECTURES: dict[str, GgufArchitecture] = {
    architecture.name: architecture for architecture in (
        GgufArchitecture("llama", "attention.layer_norm_rms_epsilon",
                         lambda tensors, config, path: _llama_like(tensors, config, path, permuted=True, biased=False)),
        GgufArchitecture("qwen2", "attention.layer_norm_rms_epsilon",
                         lambda tensors, config, path: _llama_like(tensors, config, path, permuted=False, biased=True)),
        GgufArchitecture("gpt2", "attention.layer_norm_epsilon", _gpt2),
        GgufArchitecture("t5", "attention.layer_norm_rms_epsilon", build_t5, configure=t5_config,
                         tokenizer=t5_tokenizer),
    )
}
