"""Llama-family decoders from Hugging Face folders (``LlamaForCausalLM``: config.json, safetensors, tokenizer.json).

Hugging Face keeps the query and key projections in the rotate-half layout our forward pass uses, so
unlike GGUF nothing is permuted. Weights are read only through safetensors, never pickle; sharded
checkpoints (``model.safetensors.index.json``) are read shard by shard.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from attnstudio.core.families.llama import LlamaLayer, LlamaParameters
from attnstudio.errors import ModelLoadError
from attnstudio.models.loader import PretrainedModel
from attnstudio.models.tokenizer_gguf import DecoderTokenizer

DECODER_MODEL_TYPES = ("llama",)


def read_model_type(folder: Path) -> str | None:
    """config.json's model_type, or None where there is no readable config (the caller reports that)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def load_hf_decoder(folder: Path) -> PretrainedModel:
    config = _config(folder)
    tensors = _read_tensors(folder)
    parameters = _parameters(tensors, config, folder)
    tokenizer = _tokenizer(folder, config)
    return PretrainedModel(folder.name, folder, config, parameters, tokenizer)


def _config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {error}") from None
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ModelLoadError(f"{folder / 'config.json'} has no valid {key!r}")
    if config.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"activation {config.get('hidden_act')!r} is not supported (Llama uses 'silu')")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ModelLoadError("projection biases (attention_bias / mlp_bias) are not supported for Llama folders")
    scaling = config.get("rope_scaling")
    if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
        raise ModelLoadError(f"RoPE scaling {scaling.get('rope_type') or scaling.get('type')!r} is not supported")
    config.setdefault("num_key_value_heads", config["num_attention_heads"])
    config["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if config["num_attention_heads"] % config["num_key_value_heads"]:
        raise ModelLoadError("config.json: num_attention_heads is not a multiple of num_key_value_heads")
    return config


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file  # noqa: PLC0415

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ModelLoadError(f"{index} is damaged") from None
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise ModelLoadError(f"{folder} has no model.safetensors (PyTorch .bin files are not loaded: they use pickle)")
    tensors = {}
    for shard in shards:
        try:
            tensors.update(load_file(str(folder / shard)))
        except Exception as error:  # safetensors raises several types for damaged files
            raise ModelLoadError(f"cannot read {folder / shard}: it is damaged or not safetensors ({error})") from None
    return tensors


def _parameters(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> LlamaParameters:
    d_model, d_ff = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            tensor = np.asarray(tensors[name], dtype=np.float32)
        except KeyError:
            raise ModelLoadError(f"{folder.name} lacks the tensor {name!r}; is this a LlamaForCausalLM?") from None
        if tensor.shape != shape:
            raise ModelLoadError(f"{folder.name}: tensor {name} has shape {tensor.shape}, config.json implies {shape}")
        return tensor

    layers = []
    for index in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{index}."
        projections = [get(prefix + "self_attn.q_proj.weight", (heads * head_dim, d_model)),
                       get(prefix + "self_attn.k_proj.weight", (kv_heads * head_dim, d_model)),
                       get(prefix + "self_attn.v_proj.weight", (kv_heads * head_dim, d_model))]
        gate_up = [get(prefix + "mlp.gate_proj.weight", (d_ff, d_model)), get(prefix + "mlp.up_proj.weight",
                                                                             (d_ff, d_model))]
        layers.append(LlamaLayer(
            attention_norm=get(prefix + "input_layernorm.weight", (d_model,)),
            qkv_weight=np.ascontiguousarray(np.concatenate(projections, axis=0).T),  # (d_model, q + k + v)
            attention_out_weight=np.ascontiguousarray(get(prefix + "self_attn.o_proj.weight",
                                                          (d_model, heads * head_dim)).T),
            mlp_norm=get(prefix + "post_attention_layernorm.weight", (d_model,)),
            gate_up_weight=np.ascontiguousarray(np.concatenate(gate_up, axis=0).T),  # (d_model, 2 d_ff)
            down_weight=np.ascontiguousarray(get(prefix + "mlp.down_proj.weight", (d_model, d_ff)).T),
        ))
    embeddings = get("model.embed_tokens.weight", (config["vocab_size"], d_model))
    tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in tensors
    return LlamaParameters(
        token_embeddings=embeddings, layers=layers, final_norm=get("model.norm.weight", (d_model,)),
        unembedding=None if tied else np.ascontiguousarray(get("lm_head.weight", (config["vocab_size"], d_model)).T),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, rope_base=float(config.get("rope_theta", 10000.0)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        context_length=int(config.get("max_position_embeddings", 2048)))


def _tokenizer(folder: Path, config: dict) -> DecoderTokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no tokenizer.json")
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415

        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from None
    pad = config.get("pad_token_id")
    if not isinstance(pad, int):
        pad = config.get("eos_token_id") if isinstance(config.get("eos_token_id"), int) else 0
    return DecoderTokenizer(tokenizer, int(config.get("max_position_embeddings", 2048)), pad_id=pad, bos_id=None,
                            own_special_tokens=True)
