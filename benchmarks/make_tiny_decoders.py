"""Tiny random Llama, Qwen2 and GPT-2 checkpoints and their transformers reference tensors, for tests/data.

Run in the benchmark venv (torch + transformers): ``.venv-bench/bin/python benchmarks/make_tiny_decoders.py``.
Each family gets a folder ``tests/data/tiny-<family>/`` (config.json, model.safetensors, tokenizer.json: a
byte-level BPE trained with ``tokenizers`` on a few sentences) and ``tests/data/tiny-<family>.npz`` with
``input_ids`` (n,), ``attentions`` (layers, heads, n, n), ``hidden_states`` (layers + 1, n, d_model) and
``last_logits`` (vocab,) from the model in eager attention, float32.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
TEXT = "The cat sat on the mat because it was tired. The dog did not."
CORPUS = [TEXT, "A transformer attends to every earlier token.", "Keys, values and queries meet in each head.",
          "the quick brown fox jumps over the lazy dog", "Attention weights sum to one in every row."]
VOCAB, D_MODEL, D_FF, HEADS, KV_HEADS, LAYERS, CONTEXT = 300, 32, 64, 4, 2, 2, 64


def train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def build(family: str, vocab: int):
    common = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    if family == "gpt2":
        config = GPT2Config(n_embd=D_MODEL, n_head=HEADS, n_layer=LAYERS, n_positions=CONTEXT, n_inner=D_FF, **common)
        return GPT2LMHeadModel(config)
    kwargs = {"hidden_size": D_MODEL, "intermediate_size": D_FF, "num_attention_heads": HEADS,
              "num_key_value_heads": KV_HEADS, "num_hidden_layers": LAYERS, "max_position_embeddings": CONTEXT,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, **common}
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, **kwargs))
    return Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, use_sliding_window=False, **kwargs))


def randomise(model, generator: torch.Generator) -> None:
    """Every parameter random (biases too: zero biases would hide a missing bias), norms near 1."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            is_norm = "norm" in name or ".ln_" in name or name.startswith(("ln_f", "transformer.ln_f"))
            parameter.copy_(1.0 + 0.1 * noise if is_norm and name.endswith("weight") else 0.3 * noise)


def main() -> None:
    torch.manual_seed(0)
    tokenizer = train_tokenizer()
    input_ids = tokenizer.encode(TEXT).ids
    for index, family in enumerate(("llama", "qwen2", "gpt2")):
        model = build(family, tokenizer.get_vocab_size())
        randomise(model, torch.Generator().manual_seed(index))
        model = model.float().eval()
        model.config._attn_implementation = "eager"
        folder = DATA / f"tiny-{family}"
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "generation_config.json").unlink(missing_ok=True)
        tokenizer.save(str(folder / "tokenizer.json"))
        with torch.inference_mode():
            out = model(torch.tensor([input_ids]), output_attentions=True, output_hidden_states=True)
        np.savez_compressed(
            DATA / f"tiny-{family}.npz", input_ids=np.asarray(input_ids, dtype=np.int64),
            attentions=torch.stack(out.attentions)[:, 0].numpy().astype(np.float32),
            hidden_states=torch.stack(out.hidden_states)[:, 0].numpy().astype(np.float32),
            last_logits=out.logits[0, -1].numpy().astype(np.float32))
        print(family, json.loads((folder / "config.json").read_text())["architectures"], len(input_ids), "tokens",
              file=sys.stderr)


if __name__ == "__main__":
    main()
