"""Llama decoders from Hugging Face folders: the same weights as a GGUF give the same forward pass."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from attnstudio.core.families import family_of
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf import load_gguf
from attnstudio.models.registry import load_model
from tests.core.tiny_gguf import CONTEXT, D_FF, D_MODEL, HEADS, KV_HEADS, LAYERS, write_tiny_llama

HF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, index, part, _ = gguf_name.split(".")
    return f"model.layers.{index}.{HF_NAMES[part]}.weight"


@pytest.fixture
def twins(tmp_path, monkeypatch):
    """The tiny Llama as a GGUF (q/k permuted by llama.cpp's rule) and as a Hugging Face folder (rotate-half)."""
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    gguf_path = tmp_path / "tiny.gguf"
    tensors = write_tiny_llama(gguf_path)
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    save_file({hf_name(name): np.ascontiguousarray(value) for name, value in tensors.items()},
              str(folder / "model.safetensors"))
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": D_MODEL,
              "intermediate_size": D_FF, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
              "num_hidden_layers": LAYERS, "vocab_size": tensors["token_embd.weight"].shape[0], "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "max_position_embeddings": CONTEXT, "tie_word_embeddings": True,
              "hidden_act": "silu"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(load_gguf(gguf_path, cache=False).tokenizer._tokenizer.to_str())
    return gguf_path, folder


def test_a_hugging_face_folder_and_its_gguf_give_the_same_forward_pass(twins):
    gguf_path, folder = twins
    from_gguf, from_folder = load_model(str(gguf_path)), load_model(str(folder))
    assert family_of(from_folder.parameters).name == "llama"
    text = "the cat sat on the mat"
    ids = from_folder.tokenizer.encode(text).ids
    np.testing.assert_array_equal(ids, from_gguf.tokenizer.encode(text).ids)
    forward = family_of(from_gguf.parameters).forward
    a, b = forward(from_gguf.parameters, ids), forward(from_folder.parameters, ids)
    np.testing.assert_array_equal(a.attentions(), b.attentions())
    np.testing.assert_array_equal(a.next_logits, b.next_logits)


def test_untied_head_and_unsupported_settings(twins):
    _, folder = twins
    config = json.loads((folder / "config.json").read_text())

    tensors = load_file(str(folder / "model.safetensors"))
    head = np.random.default_rng(3).standard_normal(tensors["model.embed_tokens.weight"].shape).astype(np.float32)
    save_file({**tensors, "lm_head.weight": head}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    model = load_model(str(folder))
    np.testing.assert_array_equal(model.parameters.unembedding, head.T)
    for change, message in (({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
                            ({"attention_bias": True}, "biases"), ({"hidden_act": "gelu"}, "gelu")):
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ModelLoadError, match=message):
            load_model(str(folder))
