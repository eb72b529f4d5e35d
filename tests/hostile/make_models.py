"""Writes the hostile model folders of tests/hostile/models (tiny BERTs, a few KiB each).

Run ``python tests/hostile/make_models.py`` after changing a recipe; the folders are committed so the
corpus is plain files. ``good`` loads and computes; every other folder breaks one thing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent / "models"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "b", ".", "##s", "it",
         "was", "tired", "because", "hello", "world"]
HIDDEN, HEADS, LAYERS, INTERMEDIATE, POSITIONS = 8, 2, 1, 16, 32


def config(**changes) -> dict:
    base = {"model_type": "bert", "hidden_act": "gelu", "hidden_size": HIDDEN, "num_attention_heads": HEADS,
            "num_hidden_layers": LAYERS, "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS,
            "type_vocab_size": 2, "vocab_size": len(VOCAB), "layer_norm_eps": 1e-12}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def tensors(vocab: int = len(VOCAB), positions: int = POSITIONS, types: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    out = {"embeddings.word_embeddings.weight": normal(vocab, HIDDEN),
           "embeddings.position_embeddings.weight": normal(positions, HIDDEN),
           "embeddings.token_type_embeddings.weight": normal(types, HIDDEN),
           "embeddings.LayerNorm.weight": np.ones(HIDDEN, np.float32),
           "embeddings.LayerNorm.bias": np.zeros(HIDDEN, np.float32)}
    for layer in range(LAYERS):
        prefix = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            out[prefix + name + ".weight"] = normal(HIDDEN, HIDDEN)
            out[prefix + name + ".bias"] = normal(HIDDEN)
        out[prefix + "intermediate.dense.weight"] = normal(INTERMEDIATE, HIDDEN)
        out[prefix + "intermediate.dense.bias"] = normal(INTERMEDIATE)
        out[prefix + "output.dense.weight"] = normal(HIDDEN, INTERMEDIATE)
        out[prefix + "output.dense.bias"] = normal(HIDDEN)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            out[prefix + norm + ".weight"] = np.ones(HIDDEN, np.float32)
            out[prefix + norm + ".bias"] = np.zeros(HIDDEN, np.float32)
    return out


def tokenizer(vocab: list[str] = VOCAB, pre_tokenizer: dict | None = None) -> dict:
    ids = {token: index for index, token in enumerate(vocab)}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": pre_tokenizer or {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [ids["[CLS]"]], "tokens": ["[CLS]"]},
                                              "[SEP]": {"id": "[SEP]", "ids": [ids["[SEP]"]], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }


def write(name: str, *, cfg=None, weights=None, tok=None, raw_config: str | None = None) -> None:
    folder = HERE / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(raw_config if raw_config is not None else json.dumps(cfg or config(), indent=1))
    save_file(weights if weights is not None else tensors(), str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(json.dumps(tok or tokenizer()))


def with_change(name: str, value) -> dict[str, np.ndarray]:
    out = tensors()
    out[name] = value
    return out


def main() -> None:
    write("good")
    # item 2: a catastrophic regex; the tokenizers library panics (a BaseException) on "aaaa...ab"
    write("tokenizer_catastrophic_regex", tok=tokenizer(pre_tokenizer={
        "type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}))
    # item 8: shapes, config values, non-finite weights, tokenizer ids past the vocabulary
    write("query_weight_wrong_shape", weights=with_change("encoder.layer.0.attention.self.query.weight",
                                                          np.ones((HIDDEN, HIDDEN + 3), np.float32)))
    write("intermediate_bias_wrong_shape", weights=with_change("encoder.layer.0.intermediate.dense.bias",
                                                               np.ones(3, np.float32)))
    write("layer_norm_2d", weights=with_change("embeddings.LayerNorm.weight", np.ones((2, HIDDEN), np.float32)))
    write("zero_position_rows", weights=tensors(positions=0))
    write("zero_token_type_rows", weights=tensors(types=0))
    write("tokenizer_ids_past_vocabulary", weights=tensors(vocab=6))
    write("nan_weights", weights=with_change("encoder.layer.0.attention.self.key.weight",
                                             np.full((HIDDEN, HIDDEN), np.nan, np.float32)))
    write("inf_embedding", weights=with_change("embeddings.word_embeddings.weight",
                                               np.full((len(VOCAB), HIDDEN), np.inf, np.float32)))
    write("int_weights", weights=with_change("embeddings.LayerNorm.bias", np.zeros(HIDDEN, np.int32)))
    for value, label in (("abc", "string"), (None, "null"), (-1e-5, "negative"), (float("inf"), "huge")):
        write(f"layer_norm_eps_{label}", cfg=config(layer_norm_eps=value) if value != float("inf") else None,
              raw_config=None if value != float("inf") else json.dumps(config())[:-1] + ', "layer_norm_eps": 1e999}')
    write("max_positions_string", cfg=config(max_position_embeddings="abc"))
    write("max_positions_negative", cfg=config(max_position_embeddings=-5))
    write("max_positions_bool", cfg=config(max_position_embeddings=True))
    write("heads_huge", cfg=config(num_attention_heads=10**30))
    write("layers_missing", cfg=config(num_hidden_layers=...))
    write("hidden_act_list", cfg=config(hidden_act=["gelu"]))
    write("config_nested_deeply", raw_config="[" * 5_000 + "]" * 5_000)
    write("config_not_utf8", raw_config="")  # replaced below by raw bytes
    (HERE / "config_not_utf8" / "config.json").write_bytes(b"\xff\xfe{}")
    write("safetensors_garbage")
    (HERE / "safetensors_garbage" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    write("tokenizer_garbage")
    (HERE / "tokenizer_garbage" / "tokenizer.json").write_text('{"model": {"type": "Nonsense"}}')


if __name__ == "__main__":
    main()
