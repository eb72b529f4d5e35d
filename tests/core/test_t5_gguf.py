"""T5 from GGUF files (llama.cpp's ``t5`` architecture), against transformers' references: the tiny checkpoints
converted by benchmarks/make_tiny_t5_gguf.py (F32 and Q8_0), their SentencePiece tokenizer against transformers'
and sentencepiece's ids, every quantisation gguf can write, damaged files and `attnstudio compute`."""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import MODEL_ARCH, MODEL_TENSORS, TENSOR_NAMES

from attnstudio.core.families import family_of
from attnstudio.engine import Engine
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf_t5 import LLAMA_CPP_MAX_DISTANCE, MAX_DISTANCE_KEY
from attnstudio.models.registry import load_model
from attnstudio.session import Session
from tests.core.test_cli import run_cli

DATA = Path(__file__).resolve().parent.parent / "data"
CONVERTED = {"tiny-t5.gguf": "tiny-t5", "tiny-t5-relu.gguf": "tiny-t5-relu"}  # F32 GGUF -> its checkpoint
QUANTISED = DATA / "tiny-t5-q8_0.gguf"
CHARSMAP = "tokenizer.ggml.precompiled_charsmap"  # 240 kB that gguf's reader parses byte by byte (~2 s)


@functools.cache
def loaded(path: Path):
    """Each committed model once per test run (a T5 GGUF's reader takes seconds: see CHARSMAP)."""
    return load_model(str(path))


@functools.cache
def parsed(path: Path) -> tuple[str, list, dict[str, np.ndarray]]:
    """(architecture, [(key, value, types)], float32 tensors) of a GGUF."""
    reader = gguf.GGUFReader(str(path))
    fields = [(key, field.contents(), field.types) for key, field in reader.fields.items()]
    arrays = {tensor.name: np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
              .reshape(tuple(int(n) for n in reversed(tensor.shape))) for tensor in reader.tensors}
    return str(reader.fields["general.architecture"].contents()), fields, arrays


def stacked(traces) -> np.ndarray:
    return np.stack([trace.weights for trace in traces])  # (layers, heads, n_q, n_k)


def errors(model, reference, prefix=""):
    """Largest differences from the transformers reference: encoder, decoder, cross attentions, logits."""
    ids = reference["input_ids"]
    target = reference["decoder_input_ids"][:1] if prefix else reference["decoder_input_ids"]  # empty: the start
    result = family_of(model.parameters).forward(model.parameters, ids, target_ids=target)
    pairs = ((result.attentions(), "encoder_attentions"), (stacked(result.decoder_traces), "decoder_attentions"),
             (stacked(result.cross_traces), "cross_attentions"), (result.next_logits, "last_logits"))
    for got, key in pairs:
        assert got.shape == reference[prefix + key].shape, key
    return [float(np.abs(got - reference[prefix + key]).max()) for got, key in pairs]


def rewrite(source: Path, target: Path, *, drop=(), fields=None, tensors=None, tensor_type=None,
            architecture=None) -> Path:
    """A copy of a GGUF with header keys dropped (always the tokenizer's normaliser table, which only slows
    reading) or set (``fields``: key -> (value, type[, subtype])) and tensors replaced or dropped (``tensors``:
    name -> float32 array or None), optionally every matrix stored as ``tensor_type``."""
    own_architecture, header, arrays = parsed(source)
    writer = gguf.GGUFWriter(str(target), architecture or own_architecture)
    for key, value, kinds in header:
        if key.startswith("GGUF.") or key in ("general.architecture", CHARSMAP, *drop) or key in (fields or {}):
            continue
        writer.add_key_value(key, value, kinds[0], sub_type=kinds[-1] if kinds[0] == gguf.GGUFValueType.ARRAY else None)
    for key, (value, *kinds) in (fields or {}).items():
        writer.add_key_value(key, value, *kinds)
    for name, array in {**arrays, **(tensors or {})}.items():
        if array is None:
            continue
        kind = gguf.GGMLQuantizationType.F32 if tensor_type is None or array.ndim == 1 else tensor_type
        try:
            stored = gguf.quants.quantize(array, kind)
        except gguf.QuantError:  # a row that is not a whole number of blocks: F16, as llama.cpp's converter does
            kind = gguf.GGMLQuantizationType.F16
            stored = gguf.quants.quantize(array, kind)
        writer.add_tensor(name, stored, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


@pytest.mark.parametrize("file, checkpoint", CONVERTED.items())
@pytest.mark.parametrize("prefix", ["", "empty_"])
def test_a_converted_gguf_matches_transformers(file, checkpoint, prefix):
    reference = np.load(DATA / f"{checkpoint}.npz")
    encoder, decoder, cross, logits = errors(loaded(DATA / file), reference, prefix)
    assert max(encoder, decoder, cross) <= 1e-5 and logits <= 1e-4, (encoder, decoder, cross, logits)
    assert max(encoder, decoder, cross) <= 2e-6  # float32 weights: the same numbers as the folder


@pytest.mark.parametrize("file, checkpoint", CONVERTED.items())
def test_the_gguf_holds_exactly_the_folders_parameters(file, checkpoint):
    from_gguf, from_folder = loaded(DATA / file).parameters, loaded(DATA / checkpoint).parameters
    for field in dataclasses.fields(from_folder):
        ours, theirs = getattr(from_gguf, field.name), getattr(from_folder, field.name)
        if field.name.endswith("layers"):
            assert len(ours) == len(theirs)
            for mine, other in zip(ours, theirs, strict=True):
                for name, value in vars(other).items():
                    mine_value = getattr(mine, name)
                    if dataclasses.is_dataclass(value):  # an attention's q/k/v and output matrices
                        assert all(np.array_equal(getattr(mine_value, part), getattr(value, part))
                                   for part in ("qkv_weight", "out_weight")), name
                    else:
                        assert (mine_value is None and value is None) or np.array_equal(mine_value, value), name
        elif isinstance(theirs, np.ndarray) or theirs is None:
            assert (ours is None and theirs is None) or np.array_equal(ours, theirs), field.name
        elif isinstance(theirs, float):  # the header stores the epsilon as float32
            assert np.float32(ours) == np.float32(theirs), field.name
        else:
            assert ours == theirs, field.name  # gated, activation, rescale, buckets, max distance, start id


def test_every_tensor_name_is_gguf_pys_t5_name():
    known = {TENSOR_NAMES[kind].format(bid=block) + ".weight" for kind in MODEL_TENSORS[MODEL_ARCH.T5]
             for block in range(3)}
    for file in (*CONVERTED, QUANTISED.name):
        names = set(parsed(DATA / file)[2])
        assert names <= known and "dec.blk.2.cross_attn_q.weight" in known
        assert {"enc.blk.0.attn_rel_b.weight", "dec.blk.0.attn_rel_b.weight", "dec.output_norm.weight"} <= names
    header = {key: value for key, value, _ in parsed(DATA / "tiny-t5.gguf")[1]}
    assert header["tokenizer.ggml.model"] == "t5" and header["t5.decoder_block_count"] == 3
    assert header["general.architecture"] == "t5" and len(header[CHARSMAP]) > 1000


def test_the_q8_0_file_is_a_faithful_quantisation_and_close_to_transformers():
    exact = parsed(DATA / "tiny-t5.gguf")[2]
    kinds = set()
    for tensor in gguf.GGUFReader(str(QUANTISED)).tensors:
        kinds.add(tensor.tensor_type.name)
        expected = gguf.quants.dequantize(gguf.quants.quantize(exact[tensor.name], tensor.tensor_type),
                                          tensor.tensor_type)
        np.testing.assert_array_equal(gguf.quants.dequantize(tensor.data, tensor.tensor_type), expected)
    assert kinds == {"Q8_0", "F16", "F32"}  # rows of 48 and of 4 heads are no whole Q8_0 block: F16
    quantised, plain = loaded(QUANTISED).parameters, loaded(DATA / "tiny-t5.gguf").parameters
    first, first_plain = quantised.encoder_layers[0], plain.encoder_layers[0]
    change = np.abs(first.self_attention.qkv_weight - first_plain.self_attention.qkv_weight)
    assert 0 < change.max() < 0.01  # dequantized, not read as raw bytes
    encoder, decoder, cross, logits = errors(loaded(QUANTISED), np.load(DATA / "tiny-t5.npz"))
    assert max(encoder, decoder, cross) < 0.1 and logits < 0.2, (encoder, decoder, cross, logits)


@pytest.mark.parametrize("kind", ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_every_quantisation_gguf_writes_loads(tmp_path, kind):
    """The quantisations gguf's quantize can write at these row sizes (K-quants need rows of 256)."""
    path = rewrite(DATA / "tiny-t5.gguf", tmp_path / f"{kind}.gguf", tensor_type=gguf.GGMLQuantizationType[kind])
    assert kind in {tensor.tensor_type.name for tensor in gguf.GGUFReader(str(path)).tensors}
    model = load_model(str(path))
    quantised, plain = model.parameters, loaded(DATA / "tiny-t5.gguf").parameters
    change = float(np.abs(quantised.token_embeddings - plain.token_embeddings).max())
    assert 0 < change < 0.15, change  # 4-bit blocks of weights up to ~0.6 round by at most ~0.05
    reference = np.load(DATA / "tiny-t5.npz")
    assert np.isfinite(errors(model, reference)).all()


def test_without_attnstudios_distance_key_the_bias_uses_llama_cpps_128(tmp_path):
    path = rewrite(DATA / "tiny-t5.gguf", tmp_path / "plain.gguf", drop={MAX_DISTANCE_KEY})
    model = load_model(str(path))
    assert model.parameters.max_distance == LLAMA_CPP_MAX_DISTANCE == 128
    reference = np.load(DATA / "tiny-t5.npz")
    folder = loaded(DATA / "tiny-t5").parameters
    as_llama_cpp = dataclasses.replace(folder, max_distance=128)
    forward = family_of(folder).forward
    ids, target = reference["input_ids"], reference["decoder_input_ids"]
    np.testing.assert_allclose(forward(model.parameters, ids, target_ids=target).attentions(),
                               forward(as_llama_cpp, ids, target_ids=target).attentions(), atol=1e-6)
    assert errors(model, reference)[0] > 1e-3  # the checkpoint's own distance (20) matters for 26 tokens


def test_the_tokenizer_gives_transformers_ids():
    references = json.loads((DATA / "tiny-t5-gguf-tokens.json").read_text(encoding="utf-8"))
    tokenizer = loaded(DATA / "tiny-t5.gguf").tokenizer
    assert any("é" in text for text in references["sentences"]) and any("2024" in text for text in
                                                                       references["sentences"])
    for text, ids, spm_ids in zip(references["sentences"], references["transformers"], references["sentencepiece"],
                                  strict=True):
        encoded = tokenizer.encode(text)
        assert list(encoded.ids) == ids, text
        if "</s>" not in text:  # transformers, and so attnstudio, read a typed "</s>" as the end token
            assert ids == spm_ids, text
        assert encoded.tokens[-1] == "</s>"
    target = tokenizer.encode_target("Das Haus")
    assert target.tokens[0] == "<pad>" and "</s>" not in target.tokens
    assert "".join(tokenizer.decode_token(i) for i in target.ids[1:]) == " Das Haus"
    assert "\u2581" in target.tokens and "" not in target.tokens and " " not in target.tokens  # a lone space: '▁'


def test_the_engine_and_the_cli_give_what_the_folder_gives(tmp_path):
    session = Session(text="The house is wonderful.", target_text="Das Haus", model=str(DATA / "tiny-t5.gguf"),
                      backend="numpy", attention_kind="cross")
    result = Engine().compute(session)
    assert set(result.kinds) == {"encoder", "decoder", "cross"} and result.key_tokens[-1] == "</s>"
    assert result.attentions().shape == (3, 4, len(result.target_tokens), len(result.key_tokens))
    outputs = {}
    for name, model in (("gguf", DATA / "tiny-t5.gguf"), ("folder", DATA / "tiny-t5")):
        out = tmp_path / f"{name}.npz"
        done = run_cli("compute", "The house is wonderful.", "--target", "Das Haus", "--model", str(model),
                       "--backend", "numpy", "-o", str(out))
        assert done.returncode == 0, done.stderr
        outputs[name] = np.load(out, allow_pickle=False)
    gguf_out, folder_out = outputs["gguf"], outputs["folder"]
    assert set(gguf_out.files) == set(folder_out.files) >= {"tokens", "target_tokens", "attentions",
                                                            "decoder_attentions", "cross_attentions", "next_logits"}
    for key in folder_out.files:
        assert (gguf_out[key].dtype.kind, gguf_out[key].ndim) == (folder_out[key].dtype.kind, folder_out[key].ndim), key
    n_src, n_tgt = len(gguf_out["tokens"]), len(gguf_out["target_tokens"])
    assert gguf_out["cross_attentions"].shape == (3, 4, n_tgt, n_src) and gguf_out["next_logits"].shape == (227,)
    np.testing.assert_allclose(gguf_out["cross_attentions"], result.attentions(), atol=1e-6)


DAMAGES = {  # name -> rewrite()'s keyword arguments
    "missing tensor": {"tensors": {"dec.blk.1.cross_attn_v.weight": None}},
    "no head count": {"drop": {"t5.attention.head_count"}},
    "a table in every layer": {"tensors": {"enc.blk.1.attn_rel_b.weight": np.zeros((32, 4), dtype=np.float32)}},
    "a layer without its gate": {"tensors": {"dec.blk.2.ffn_gate.weight": None}},
    "bpe vocabulary": {"fields": {"tokenizer.ggml.model": ("gpt2", gguf.GGUFValueType.STRING)}},
    "scores missing": {"drop": {"tokenizer.ggml.scores"}},
    "t5encoder": {"architecture": "t5encoder"},
    "start token a string": {"fields": {"t5.decoder_start_token_id": ("0", gguf.GGUFValueType.STRING)}},
    "start token past the vocabulary": {"fields": {"t5.decoder_start_token_id": (999, gguf.GGUFValueType.UINT32)}},
}


def damaged(tmp_path, name: str) -> Path:
    source = DATA / "tiny-t5.gguf"
    if name == "truncated":
        path = tmp_path / "truncated.gguf"
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        return path
    return rewrite(source, tmp_path / "damaged.gguf", **DAMAGES[name])


@pytest.mark.parametrize("name, match", [
    ("truncated", "is damaged"),
    ("missing tensor", "lacks the tensor 'dec.blk.1.cross_attn_v.weight'"),
    ("no head count", "no valid t5.attention.head_count"),
    ("a table in every layer", "relative position table in every layer"),
    ("a layer without its gate", "dec.blk.2.ffn_gate is missing"),
    ("bpe vocabulary", "SentencePiece unigram"),
    ("scores missing", "no tokenizer vocabulary or scores"),
    ("start token a string", "t5.decoder_start_token_id must be a token id"),
    ("start token past the vocabulary", "t5.decoder_start_token_id 999 is not a token"),
    ("t5encoder", "'t5encoder' model \\(a T5 encoder without its decoder\\); attnstudio runs GGUF architectures "
                  "llama, qwen2, gpt2, t5"),
])
def test_a_damaged_t5_gguf_is_one_line(tmp_path, name, match):
    with pytest.raises(ModelLoadError, match=match) as error:
        load_model(str(damaged(tmp_path, name)))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, says", [("truncated", "truncated.gguf is damaged or not a GGUF file"),
                                        ("missing tensor", "lacks the tensor 'dec.blk.1.cross_attn_v.weight'")])
def test_the_cli_says_one_line_for_a_damaged_t5_gguf(tmp_path, name, says):
    done = run_cli("compute", "The house.", "--target", "Das", "--model", str(damaged(tmp_path, name)),
                   "-o", str(tmp_path / "out.npz"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnstudio: error: ") and says in lines[0], done.stderr
    assert not (tmp_path / "out.npz").exists()
