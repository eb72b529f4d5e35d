"""A tiny random Llama written as a GGUF file with the gguf package, the way llama.cpp's converter writes it."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
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
