"""Decoders from Hugging Face folders (config.json, safetensors, tokenizer.json).

``LlamaForCausalLM``, ``MistralForCausalLM`` and ``Qwen2ForCausalLM`` (q/k/v biases) become the
llama family's parameters, ``GPT2LMHeadModel`` the gpt2 family's. Hugging Face keeps the query and
key projections in the rotate-half layout our forward pass uses, so unlike GGUF nothing is permuted.
Parameters are read only through safetensors, never pickle; sharded checkpoints
(``model.safetensors.index.json``) are read shard by shard.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from attnstudio.core.families.gpt2 import Gpt2Layer, Gpt2Parameters
from attnstudio.core.families.llama import LlamaLayer, LlamaParameters
from attnstudio.errors import ModelLoadError
from attnstudio.fileio import read_regular_file
from attnstudio.models.loader import MAX_CONFIG_BYTES, PretrainedModel
from attnstudio.models.tokenizer_gguf import DecoderTokenizer

LLAMA_MODEL_TYPES = ("llama", "mistral", "qwen2")
DECODER_MODEL_TYPES = (*LLAMA_MODEL_TYPES, "gpt2")


def read_model_type(folder: Path) -> str | None:
    """config.json's model_type, or None where there is no readable config (the caller reports that)."""
    try:
        config = _config_json(folder)
    except ModelLoadError:
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _config_json(folder: Path):
    """config.json parsed, read only if it is a regular file of at most 1 MiB (never a FIFO, never 1 GB)."""
    try:
        raw = read_regular_file(folder / "config.json", MAX_CONFIG_BYTES, "config.json", ModelLoadError)
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {str(error)[:160]}") from None


def load_hf_decoder(folder: Path) -> PretrainedModel:
    if read_model_type(folder) == "gpt2":
        config = _gpt2_config(folder)
        parameters = _gpt2_parameters(_read_tensors(folder), config, folder)
        config["max_position_embeddings"] = config["n_positions"]
    else:
        config = _config(folder)
        parameters = _parameters(_read_tensors(folder), config, folder)
    tokenizer = _tokenizer(folder, config)
    return PretrainedModel(folder.name, folder, config, parameters, tokenizer)


def _config(folder: Path) -> dict:
    config = _config_json(folder)
    if not isinstance(config, dict):
        raise ModelLoadError(f"{folder / 'config.json'} is not a JSON object")
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ModelLoadError(f"{folder / 'config.json'} has no valid {key!r}")
    if config.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"activation {config.get('hidden_act')!r} is not supported (Llama uses 'silu')")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ModelLoadError("projection biases (attention_bias / mlp_bias) are not supported for Llama folders")
    window = config.get("sliding_window")
    slides = config.get("use_sliding_window") or config["model_type"] == "mistral"
    if isinstance(window, int) and window > 0 and slides:
        # Within its window a sliding-window model attends like a full causal one: texts are cut to the window.
        config["max_position_embeddings"] = min(int(config.get("max_position_embeddings", window)), window)
    scaling = config.get("rope_scaling")
    if scaling and (scaling.get("rope_type") or scaling.get("type")) not in (None, "default"):
        raise ModelLoadError(f"RoPE scaling {scaling.get('rope_type') or scaling.get('type')!r} is not supported")
    config.setdefault("num_key_value_heads", config["num_attention_heads"])
    config["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if config["num_attention_heads"] % config["num_key_value_heads"]:
        raise ModelLoadError("config.json: num_attention_heads is not a multiple of num_key_value_heads")
    return config


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
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
        except Exception as error:  # noqa: BLE001 - safetensors raises several types for damaged files
            raise ModelLoadError(f"cannot read {folder / shard}: it is damaged or not safetensors ({error})") from None
    return tensors


def _tensor(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], folder: Path,
            architecture: str) -> np.ndarray:
    """The float32 tensor ``name``, contiguous, checked against the shape config.json implies."""
    try:
        tensor = np.ascontiguousarray(tensors[name], dtype=np.float32)
    except KeyError:
        raise ModelLoadError(f"{folder.name} lacks the tensor {name!r}; is this a {architecture}?") from None
    if tensor.shape != shape:
        raise ModelLoadError(f"{folder.name}: tensor {name} has shape {tensor.shape}, config.json implies {shape}")
    return tensor


def _parameters(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> LlamaParameters:
    d_model, d_ff = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads, head_dim = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return _tensor(tensors, name, shape, folder, "LlamaForCausalLM")

    biased = config.get("model_type") == "qwen2"  # q/k/v projections carry biases, o_proj none
    layers = []
    for index in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{index}."
        bias = None
        if biased:
            bias = np.concatenate([get(prefix + "self_attn.q_proj.bias", (heads * head_dim,)),
                                   get(prefix + "self_attn.k_proj.bias", (kv_heads * head_dim,)),
                                   get(prefix + "self_attn.v_proj.bias", (kv_heads * head_dim,))])
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
            qkv_bias=bias,
        ))
    embeddings = get("model.embed_tokens.weight", (config["vocab_size"], d_model))
    tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in tensors
    return LlamaParameters(
        token_embeddings=embeddings, layers=layers, final_norm=get("model.norm.weight", (d_model,)),
        unembedding=None if tied else np.ascontiguousarray(get("lm_head.weight", (config["vocab_size"], d_model)).T),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, rope_base=float(config.get("rope_theta", 10000.0)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        context_length=int(config.get("max_position_embeddings", 2048)))


def _gpt2_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {error}") from None
    for key in ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ModelLoadError(f"{folder / 'config.json'} has no valid {key!r}")
    if config["n_embd"] % config["n_head"]:
        raise ModelLoadError("config.json: n_embd is not divisible by n_head")
    if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ModelLoadError(f"activation {config.get('activation_function')!r} is not supported "
                             f"(GPT-2 uses 'gelu_new')")
    if not config.get("scale_attn_weights", True) or config.get("scale_attn_by_inverse_layer_idx"):
        raise ModelLoadError("only GPT-2's own attention scaling (1 / sqrt(head width)) is supported")
    return config


def _gpt2_parameters(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> Gpt2Parameters:
    d_model, heads = config["n_embd"], config["n_head"]
    d_ff = config.get("n_inner") or 4 * d_model
    tensors = {name.removeprefix("transformer."): value for name, value in tensors.items()}

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return _tensor(tensors, name, shape, folder, "GPT2LMHeadModel")

    def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return get(prefix + ".weight", (d_model,)), get(prefix + ".bias", (d_model,))

    layers = []
    for index in range(config["n_layer"]):  # Conv1D stores (in, out): already laid out for x @ w
        prefix = f"h.{index}."
        layers.append(Gpt2Layer(
            attention_norm=norm(prefix + "ln_1"),
            qkv_weight=get(prefix + "attn.c_attn.weight", (d_model, 3 * d_model)),
            qkv_bias=get(prefix + "attn.c_attn.bias", (3 * d_model,)),
            attention_out_weight=get(prefix + "attn.c_proj.weight", (d_model, d_model)),
            attention_out_bias=get(prefix + "attn.c_proj.bias", (d_model,)),
            mlp_norm=norm(prefix + "ln_2"),
            up_weight=get(prefix + "mlp.c_fc.weight", (d_model, d_ff)), up_bias=get(prefix + "mlp.c_fc.bias", (d_ff,)),
            down_weight=get(prefix + "mlp.c_proj.weight", (d_ff, d_model)),
            down_bias=get(prefix + "mlp.c_proj.bias", (d_model,)),
        ))
    return Gpt2Parameters(
        token_embeddings=get("wte.weight", (config["vocab_size"], d_model)),
        position_embeddings=get("wpe.weight", (config["n_positions"], d_model)),
        layers=layers, final_norm=norm("ln_f"), num_heads=heads,
        layer_norm_eps=float(config.get("layer_norm_epsilon", 1e-5)))


def _tokenizer(folder: Path, config: dict) -> DecoderTokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - the tokenizers library raises several types for a bad file
        raise ModelLoadError(f"cannot read {path}: {error}") from None
    pad = config.get("pad_token_id")
    if not isinstance(pad, int):
        pad = config.get("eos_token_id") if isinstance(config.get("eos_token_id"), int) else 0
    return DecoderTokenizer(tokenizer, int(config.get("max_position_embeddings", 2048)), pad_id=pad, bos_id=None,
                            own_special_tokens=True)
