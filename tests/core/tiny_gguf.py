"""A tiny random Llama written as a GGUF file with the gguf package, the way llama.cpp's converter writes it."""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file
from tokenizers import pre_tokenizers

D_MODEL, D_FF, HEADS, KV_HEADS, LAYERS, CONTEXT = 32, 64, 4, 2, 2, 64  # rows of 32: Q8_0 blocks
HEAD_DIM = D_MODEL // HEADS


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: rotate-half rows -> interleaved pairs, per head."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def byte_level_vocabulary() -> tuple[list[str], list[str]]:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = ["Ġ t", "h e", "Ġt he", "a t", "Ġ c", "Ġc at"]
    tokens = ["<|endoftext|>", "<|im_start|>"] + alphabet + [merge.replace(" ", "") for merge in merges]
    return tokens, merges


def write_tiny_llama(path: Path, *, architecture: str = "llama", seed: int = 0, quantized: bool = False) -> dict:
    """Write the file; return its tensors in Hugging Face's layout (q/k rotate-half), float32, (out, in)."""
    rng = np.random.default_rng(seed)
    tokens, merges = byte_level_vocabulary()
    vocab = len(tokens)

    def random(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    hf = {"token_embd.weight": random(vocab, D_MODEL, scale=1.0), "output_norm.weight": 1 + random(D_MODEL, scale=0.1)}
    for index in range(LAYERS):
        prefix = f"blk.{index}."
        hf.update({
            prefix + "attn_norm.weight": 1 + random(D_MODEL, scale=0.1),
            prefix + "attn_q.weight": random(HEADS * HEAD_DIM, D_MODEL),
            prefix + "attn_k.weight": random(KV_HEADS * HEAD_DIM, D_MODEL),
            prefix + "attn_v.weight": random(KV_HEADS * HEAD_DIM, D_MODEL),
            prefix + "attn_output.weight": random(D_MODEL, HEADS * HEAD_DIM),
            prefix + "ffn_norm.weight": 1 + random(D_MODEL, scale=0.1),
            prefix + "ffn_gate.weight": random(D_FF, D_MODEL),
            prefix + "ffn_up.weight": random(D_FF, D_MODEL),
            prefix + "ffn_down.weight": random(D_MODEL, D_FF),
        })
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny test llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(D_MODEL)
    writer.add_feed_forward_length(D_FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3] + [1] * (vocab - 2))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_add_bos_token(False)
    for name, tensor in hf.items():
        stored = tensor
        if name.endswith("attn_q.weight"):
            stored = llama_cpp_permute(tensor, HEADS)
        elif name.endswith("attn_k.weight"):
            stored = llama_cpp_permute(tensor, KV_HEADS)
        if quantized and stored.ndim == 2:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)
            hf[name] = gguf.quants.dequantize(gguf.quants.quantize(tensor, qtype), qtype)
        else:
            writer.add_tensor(name, stored)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hf


def write_gguf_from_hf(folder: Path, path: Path, *, quantized: bool = False) -> None:
    """Convert a tiny Hugging Face checkpoint (tiny-qwen2, tiny-gpt2) to GGUF the way llama.cpp's
    convert_hf_to_gguf.py does: its tensor names, (out, in) matrices (GPT-2's Conv1D transposed, its tied head
    written as output.weight), qwen2's q/k left in rotate-half order (NeoX RoPE), the BPE as tokenizer.ggml.*."""
    config = json.loads((folder / "config.json").read_text())
    stored = load_file(str(folder / "model.safetensors"))
    tensors = {name.removeprefix("transformer."): value for name, value in stored.items()}
    architecture = config["model_type"]
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(f"tiny test {architecture}")
    out: dict[str, np.ndarray] = {}
    if architecture == "gpt2":
        d_model = config["n_embd"]
        writer.add_block_count(config["n_layer"])
        writer.add_context_length(config["n_positions"])
        writer.add_embedding_length(d_model)
        writer.add_feed_forward_length(config.get("n_inner") or 4 * d_model)
        writer.add_head_count(config["n_head"])
        writer.add_layer_norm_eps(config["layer_norm_epsilon"])
        out["token_embd.weight"] = tensors["wte.weight"]
        out["position_embd.weight"] = tensors["wpe.weight"]
        out["output_norm.weight"], out["output_norm.bias"] = tensors["ln_f.weight"], tensors["ln_f.bias"]
        out["output.weight"] = tensors["wte.weight"].copy()
        names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                 "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        for index in range(config["n_layer"]):
            for hf_name, gguf_name in names.items():
                weight = tensors[f"h.{index}.{hf_name}.weight"]
                out[f"blk.{index}.{gguf_name}.weight"] = weight if hf_name.startswith("ln") else weight.T.copy()
                out[f"blk.{index}.{gguf_name}.bias"] = tensors[f"h.{index}.{hf_name}.bias"]
        pre = "gpt2"
    else:
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(config["num_attention_heads"])
        writer.add_head_count_kv(config["num_key_value_heads"])
        writer.add_rope_freq_base(float(config.get("rope_theta") or config["rope_parameters"]["rope_theta"]))
        writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
        out["token_embd.weight"] = tensors["model.embed_tokens.weight"]
        out["output_norm.weight"] = tensors["model.norm.weight"]
        if not config.get("tie_word_embeddings", False):
            out["output.weight"] = tensors["lm_head.weight"]
        names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
        for index in range(config["num_hidden_layers"]):
            for hf_name, gguf_name in names.items():
                for kind in ("weight", "bias"):
                    if f"model.layers.{index}.{hf_name}.{kind}" in tensors:
                        out[f"blk.{index}.{gguf_name}.{kind}"] = tensors[f"model.layers.{index}.{hf_name}.{kind}"]
        pre = "qwen2"
    document = json.loads((folder / "tokenizer.json").read_text())
    vocab = document["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    special = {added["id"] for added in document["added_tokens"] if added["special"]}
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in document["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if index in special else 1 for index in range(len(tokens))])
    writer.add_token_merges(merges)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)
    for name, value in out.items():
        tensor = np.ascontiguousarray(value, dtype=np.float32)
        if quantized and tensor.ndim == 2 and tensor.shape[-1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(tensor, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
