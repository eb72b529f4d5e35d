"""Tiny random T5 checkpoints and their transformers reference tensors, for tests/data.

Run in the benchmark venv (torch + transformers): ``.venv-bench/bin/python benchmarks/make_tiny_t5.py``.
Two checkpoints, one per T5 generation:

- ``tests/data/tiny-t5/``: T5 v1.1 / Flan-T5 style: gated GELU, an untied language-model head (no rescale),
  more decoder layers than encoder layers, a short ``relative_attention_max_distance`` so the source's
  distances reach the last, clamped bucket;
- ``tests/data/tiny-t5-relu/``: the original T5: ReLU feed-forward, the head tied to the embeddings and
  the decoder output rescaled by d_model**-0.5.

Each folder holds config.json (as the Hugging Face Hub's T5 files spell it), model.safetensors and
tokenizer.json (SentencePiece-style: '▁' marks a word's start; a BPE trained with ``tokenizers`` on a few
sentences, so words are whole pieces; it adds ``</s>`` after a source, as T5's tokenizers do).
``tests/data/tiny-t5*.npz`` holds, from the model in eager attention, float32,
teacher-forced (decoder inputs = start token + target tokens): ``source_text`` and ``target_text`` (str),
``input_ids`` (n_src,),
``decoder_input_ids`` (n_tgt,), ``encoder_attentions`` (layers, heads, n_src, n_src),
``decoder_attentions`` (decoder layers, heads, n_tgt, n_tgt), ``cross_attentions`` (decoder layers,
heads, n_tgt, n_src), ``last_logits`` (vocab,) and the same for an empty target (``empty_*``: the start
token alone).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import T5Config, T5ForConditionalGeneration

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SOURCE = ("translate English to German: The house is wonderful and the garden is very small, "
          "but the cat sat on the mat because it was tired.")
TARGET = "Das Haus ist wunderbar und der Garten ist sehr klein,"
CORPUS = [SOURCE, TARGET, "translate English to German: The cat sat on the mat because it was tired.",
          "Die Katze sass auf der Matte, weil sie müde war.", "summarize: Attention weights sum to one in every row.",
          "The quick brown fox jumps over the lazy dog.", "Der Garten ist sehr klein und das Haus ist gross."]
SPECIAL = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5's own vocabulary; <pad> starts the decoder
CHECKPOINTS = {
    "tiny-t5": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "num_layers": 2,
                "num_decoder_layers": 3, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 20},
    "tiny-t5-relu": {"feed_forward_proj": "relu", "tie_word_embeddings": True, "num_layers": 2,
                     "num_decoder_layers": 2, "relative_attention_num_buckets": 16,
                     "relative_attention_max_distance": 12},
}
D_MODEL, D_KV, D_FF, HEADS, VOCAB = 32, 8, 48, 4, 400


def train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))])
    assert [tokenizer.token_to_id(token) for token in SPECIAL] == [0, 1, 2]
    return tokenizer


def randomise(model, generator: torch.Generator) -> None:
    """Every weight random; norms near 1; relative-position tables large enough to matter."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.1 * noise)
            elif "relative_attention_bias" in name:
                parameter.copy_(1.0 * noise)
            else:
                parameter.copy_(0.15 * noise)


def references(model, source_ids: list[int], target_ids: list[int]) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([source_ids]), decoder_input_ids=torch.tensor([target_ids]),
                    output_attentions=True)
    return {"encoder_attentions": torch.stack(out.encoder_attentions)[:, 0].numpy().astype(np.float32),
            "decoder_attentions": torch.stack(out.decoder_attentions)[:, 0].numpy().astype(np.float32),
            "cross_attentions": torch.stack(out.cross_attentions)[:, 0].numpy().astype(np.float32),
            "last_logits": out.logits[0, -1].numpy().astype(np.float32)}


def main() -> None:
    tokenizer = train_tokenizer()
    source_ids = tokenizer.encode(SOURCE).ids  # ends with </s>
    for index, (name, settings) in enumerate(CHECKPOINTS.items()):
        config = T5Config(vocab_size=tokenizer.get_vocab_size(), d_model=D_MODEL, d_kv=D_KV, d_ff=D_FF,
                          num_heads=HEADS, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
                          eos_token_id=1, **settings)
        config._attn_implementation = "eager"
        model = T5ForConditionalGeneration(config)
        randomise(model, torch.Generator().manual_seed(10 + index))
        if not settings["tie_word_embeddings"]:  # T5 v1.1: a head of its own (transformers ties it by default)
            model.lm_head.weight = torch.nn.Parameter(
                0.15 * torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(99)))
        model = model.float().eval()
        assert model.config.scale_decoder_outputs == settings["tie_word_embeddings"]
        start = model.config.decoder_start_token_id
        target_ids = [start] + tokenizer.encode(TARGET, add_special_tokens=False).ids

        folder = DATA / name
        folder.mkdir(parents=True, exist_ok=True)
        skip = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
        if settings["tie_word_embeddings"]:
            skip.add("lm_head.weight")
        tensors = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()
                   if key not in skip}
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        hub_config = {key: value for key, value in model.config.to_dict().items()
                      if key not in ("scale_decoder_outputs", "transformers_version", "dtype", "torch_dtype")}
        hub_config.update(settings, architectures=["T5ForConditionalGeneration"], model_type="t5")
        (folder / "config.json").write_text(json.dumps(hub_config, indent=2, sort_keys=True) + "\n")
        tokenizer.save(str(folder / "tokenizer.json"))

        arrays = {"source_text": np.array(SOURCE), "target_text": np.array(TARGET),
                  "input_ids": np.asarray(source_ids, dtype=np.int64),
                  "decoder_input_ids": np.asarray(target_ids, dtype=np.int64),
                  **references(model, source_ids, target_ids)}
        arrays.update({f"empty_{key}": value for key, value in references(model, source_ids, [start]).items()})
        np.savez_compressed(DATA / f"{name}.npz", **arrays)
        print(name, settings["feed_forward_proj"], "tied" if settings["tie_word_embeddings"] else "untied",
              len(source_ids), "source tokens,", len(target_ids), "decoder inputs", file=sys.stderr)


if __name__ == "__main__":
    main()
