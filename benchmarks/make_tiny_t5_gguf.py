"""GGUF copies of the tiny T5 checkpoints in tests/data, written the way llama.cpp's converter writes a T5.

Run in the benchmark venv (it has sentencepiece, protobuf and transformers; see the Makefile):
``.venv-bench/bin/python benchmarks/make_tiny_t5_gguf.py``. It follows ``convert_hf_to_gguf.py``'s class
``T5Model`` step by step, with the ``gguf`` package's own tensor-name map (``MODEL_ARCH.T5``) and writer:

- the vocabulary is a SentencePiece *unigram* ``spiece.model`` (llama.cpp's T5 converter reads nothing else).
  The tiny checkpoints' tokenizer.json is a BPE, so a unigram is trained on the same sentences
  (``tests/data/tiny-t5-spiece.model``, kept so the files can be rebuilt alike) with T5's ids: <pad> 0, </s> 1,
  <unk> 2. Its pieces, scores and types go in as llama.cpp's ``set_vocab`` puts them (ids past the pieces up to
  the model's vocab_size become ``[PAD{i}]``, unused), with add_space_prefix, remove_extra_whitespaces and the
  normaliser's precompiled_charsmap; the special ids and add_eos come from ``gguf.SpecialVocab`` over the folder
  transformers' T5 tokenizer saves.
- header: llama.cpp's ``set_gguf_parameters`` (t5.context_length 512 when config.json has no n_positions,
  embedding/feed-forward length, block counts, heads, key/value length, both epsilon keys, relative buckets,
  decoder_start_token_id, file type). llama.cpp has no key for ``relative_attention_max_distance`` (it uses 128);
  the tiny checkpoints use 20 and 12, so ``attnstudio.t5.relative_attention_max_distance`` is added for them.
- tensors: ``shared`` -> token_embd, ``lm_head`` -> output (only when the checkpoint has one: the tied ReLU model
  does not); 1-D tensors and norms F32; the rest F32 (``--outtype f32``) or Q8_0, falling back to F16 where a
  row is not a whole number of Q8_0 blocks (as llama.cpp does). The name map covers max(encoder, decoder) blocks
  (llama.cpp's covers the encoder's count, which would miss tiny-t5's third decoder layer).

Writes tests/data/tiny-t5.gguf, tiny-t5-relu.gguf (F32), tiny-t5-q8_0.gguf (Q8_0 of tiny-t5) and
tests/data/tiny-t5-gguf-tokens.json: sentences and the ids transformers' T5 tokenizer and sentencepiece itself
give them with this vocabulary (the tests compare the GGUF tokenizer with both).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SPIECE = DATA / "tiny-t5-spiece.model"
MAX_DISTANCE_KEY = "attnstudio.t5.relative_attention_max_distance"  # attnstudio.models.gguf_t5.MAX_DISTANCE_KEY
LLAMA_CPP_MAX_DISTANCE = 128
CORPUS = ["translate English to German: The house is wonderful and the garden is very small, but the cat sat on "
          "the mat because it was tired.", "Das Haus ist wunderbar und der Garten ist sehr klein,",
          "translate English to German: The cat sat on the mat because it was tired.",
          "Die Katze sass auf der Matte, weil sie müde war.", "summarize: Attention weights sum to one in every row.",
          "The quick brown fox jumps over the lazy dog.", "Der Garten ist sehr klein und das Haus ist gross.",
          "In 2024 the café had 15 naïve cats."]  # make_tiny_t5.py's sentences, and one with digits and accents
SENTENCES = ["The house is wonderful.", "translate English to German: The cat sat on the mat.",
             "  Die   Katze  sass  ", "café naïve Zürich 2024 and 1,500.25", "ｆｕｌｌ ｗｉｄｔｈ ① ﬁ ½ Ⅻ",
             "x😀y 猫 ñ", "müde\tKatze\nHaus", "", " ", "DAS HAUS ist GROSS!!", "<pad> and </s> inside"]
OUTPUTS = {"tiny-t5.gguf": ("tiny-t5", gguf.LlamaFileType.ALL_F32),
           "tiny-t5-relu.gguf": ("tiny-t5-relu", gguf.LlamaFileType.ALL_F32),
           "tiny-t5-q8_0.gguf": ("tiny-t5", gguf.LlamaFileType.MOSTLY_Q8_0)}


def train_spiece() -> None:
    import sentencepiece as spm  # noqa: PLC0415 - only this script needs it

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 3), model_writer=model, model_type="unigram",
                                   vocab_size=127, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    SPIECE.write_bytes(model.getvalue())


def model_folder(checkpoint: str, into: Path) -> Path:
    """A Hugging Face T5 folder as llama.cpp's converter reads it: config, weights, spiece.model, tokenizer files."""
    from transformers import T5Tokenizer  # noqa: PLC0415 - only this script needs it

    folder = into / checkpoint
    shutil.copytree(DATA / checkpoint, folder)
    (folder / "tokenizer.json").unlink()  # the BPE one; transformers writes the unigram's below
    shutil.copy(SPIECE, folder / "spiece.model")
    T5Tokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))
    return folder


def set_vocab(writer: gguf.GGUFWriter, folder: Path, hparams: dict) -> None:
    """llama.cpp's T5Model.set_vocab (a unigram spiece.model)."""
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    from sentencepiece import SentencePieceProcessor  # noqa: PLC0415 - only this script needs it
    from sentencepiece import sentencepiece_model_pb2 as model  # noqa: PLC0415

    path = folder / "spiece.model"
    proto = model.ModelProto()
    proto.ParseFromString(path.read_bytes())
    assert proto.trainer_spec.model_type == 1  # UNIGRAM
    tokenizer = SentencePieceProcessor()
    tokenizer.LoadFromFile(str(path))
    vocab_size = hparams.get("vocab_size", tokenizer.vocab_size())
    types = gguf.TokenType
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    token_types = [types.UNUSED] * vocab_size
    for token_id in range(tokenizer.vocab_size()):
        kind = types.NORMAL
        if tokenizer.IsUnknown(token_id):
            kind = types.UNKNOWN
        elif tokenizer.IsControl(token_id):
            kind = types.CONTROL
        elif tokenizer.IsUnused(token_id):
            kind = types.UNUSED
        elif tokenizer.IsByte(token_id):
            kind = types.BYTE
        tokens[token_id] = tokenizer.IdToPiece(token_id).encode()
        scores[token_id] = tokenizer.GetScore(token_id)
        token_types[token_id] = kind
    writer.add_tokenizer_model("t5")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(token_types)
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    if proto.normalizer_spec.precompiled_charsmap:
        writer.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(writer)


def set_parameters(writer: gguf.GGUFWriter, hparams: dict, ftype: gguf.LlamaFileType) -> None:
    """llama.cpp's T5Model.set_gguf_parameters, and the max distance llama.cpp has no key for."""
    writer.add_context_length(hparams.get("n_positions", 512))
    writer.add_embedding_length(hparams["d_model"])
    writer.add_feed_forward_length(hparams["d_ff"])
    writer.add_block_count(hparams["num_layers"])
    if hparams.get("num_decoder_layers") is not None:
        writer.add_decoder_block_count(hparams["num_decoder_layers"])
    writer.add_head_count(hparams["num_heads"])
    writer.add_key_length(hparams["d_kv"])
    writer.add_value_length(hparams["d_kv"])
    writer.add_layer_norm_eps(hparams["layer_norm_epsilon"])
    writer.add_relative_attn_buckets_count(hparams["relative_attention_num_buckets"])
    writer.add_layer_norm_rms_eps(hparams["layer_norm_epsilon"])
    writer.add_decoder_start_token_id(hparams["decoder_start_token_id"])
    writer.add_file_type(ftype)
    if hparams["relative_attention_max_distance"] != LLAMA_CPP_MAX_DISTANCE:
        writer.add_uint32(MAX_DISTANCE_KEY, hparams["relative_attention_max_distance"])


def add_tensors(writer: gguf.GGUFWriter, folder: Path, hparams: dict, ftype: gguf.LlamaFileType) -> None:
    """llama.cpp's name map and its choice of type per tensor (ModelBase.prepare_tensors)."""
    blocks = max(hparams["num_layers"], hparams.get("num_decoder_layers") or 0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5, blocks)
    for stored_name, tensor in load_file(str(folder / "model.safetensors")).items():
        name = stored_name
        if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            name = "shared.weight"  # T5Model.modify_tensors: the first of the three is the shared table
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise SystemExit(f"cannot map tensor {name!r}")
        data = np.asarray(tensor, dtype=np.float32)
        qtype = None
        if data.ndim <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight"):
            qtype = gguf.GGMLQuantizationType.F32
        elif ftype == gguf.LlamaFileType.ALL_F32:
            qtype = gguf.GGMLQuantizationType.F32
        else:
            qtype = gguf.GGMLQuantizationType.Q8_0
        try:
            stored = gguf.quants.quantize(data, qtype)
        except gguf.QuantError:
            qtype = gguf.GGMLQuantizationType.F16
            stored = gguf.quants.quantize(data, qtype)
        writer.add_tensor(new_name, stored, raw_dtype=qtype)


def convert(checkpoint: str, folder: Path, out: Path, ftype: gguf.LlamaFileType) -> None:
    hparams = json.loads((folder / "config.json").read_text())
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.T5])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(checkpoint)
    set_parameters(writer, hparams, ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    set_vocab(writer, folder, hparams)
    add_tensors(writer, folder, hparams, ftype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(out.name, ftype.name, out.stat().st_size, "bytes", file=sys.stderr)


def token_references(folder: Path) -> dict:
    import sentencepiece  # noqa: PLC0415 - only this script needs it
    import transformers  # noqa: PLC0415
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    return {"sentences": SENTENCES,
            "transformers": [tokenizer(text).input_ids for text in SENTENCES],
            "sentencepiece": [processor.encode(text) + [processor.eos_id()] for text in SENTENCES],
            "versions": {"transformers": transformers.__version__, "sentencepiece": sentencepiece.__version__}}


def main() -> None:
    if not SPIECE.is_file():
        train_spiece()
    with tempfile.TemporaryDirectory() as temporary:
        folders = {name: model_folder(name, Path(temporary)) for name in ("tiny-t5", "tiny-t5-relu")}
        for output, (checkpoint, ftype) in OUTPUTS.items():
            convert(checkpoint, folders[checkpoint], DATA / output, ftype)
        references = token_references(folders["tiny-t5"])
    (DATA / "tiny-t5-gguf-tokens.json").write_text(json.dumps(references, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
