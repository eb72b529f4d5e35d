"""GGUF files -> Llama parameters and tokenizer: layout, damaged files, the memory guard, the float32 cache."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from attnstudio.core.families import family_of
from attnstudio.engine import Engine
from attnstudio.errors import ModelLoadError
from attnstudio.models import gguf as gguf_module
from attnstudio.models.gguf import load_gguf, reverse_permute
from attnstudio.models.registry import load_model
from attnstudio.session import Session
from tests.core.test_cli import run_cli
from tests.core.tiny_gguf import (
    HEADS,
    KV_HEADS,
    LAYERS,
    llama_cpp_permute,
    write_tiny_llama,
)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.gguf"
    return path, write_tiny_llama(path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def test_reverse_permute_undoes_llama_cpps_permutation():
    weight = np.arange(6 * 8 * 3, dtype=np.float32).reshape(48, 3)
    for heads in (1, 2, 6):
        np.testing.assert_array_equal(reverse_permute(llama_cpp_permute(weight, heads), heads), weight)
    assert not np.array_equal(llama_cpp_permute(weight, 2), weight)


@pytest.mark.parametrize("quantized", [False, True])
def test_parameters_come_back_in_hugging_faces_layout(tmp_path, quantized):
    path = tmp_path / "tiny.gguf"
    hf = write_tiny_llama(path, quantized=quantized)
    model = load_gguf(path, cache=False)
    p = model.parameters
    assert family_of(p).name == "llama" and (p.num_heads, p.num_kv_heads, len(p.layers)) == (HEADS, KV_HEADS, LAYERS)
    q_width, kv_width = p.num_heads * p.head_dim, p.num_kv_heads * p.head_dim
    for index, layer in enumerate(p.layers):
        prefix = f"blk.{index}."
        np.testing.assert_array_equal(layer.qkv_weight[:, :q_width].T, hf[prefix + "attn_q.weight"])
        np.testing.assert_array_equal(layer.qkv_weight[:, q_width:q_width + kv_width].T, hf[prefix + "attn_k.weight"])
        np.testing.assert_array_equal(layer.qkv_weight[:, q_width + kv_width:].T, hf[prefix + "attn_v.weight"])
        np.testing.assert_array_equal(layer.down_weight.T, hf[prefix + "ffn_down.weight"])
    assert p.unembedding is None  # no output.weight: tied to the embeddings
    assert model.tokenizer.encode("<|im_start|>the cat").tokens == ["<|im_start|>", "t", "he", " cat"]
    assert model.tokenizer.raw_tokens(model.tokenizer.encode("the cat").ids) == ["t", "he", "Ġcat"]
    assert model.tokenizer.decode_token(model.tokenizer.encode(" cat").ids[0]) == " cat"


def _one_line_error(path) -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(path))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_truncated_file_is_one_clear_line(tiny):
    path, _ = tiny
    data = path.read_bytes()
    for size in (0, 3, 20, len(data) // 2, len(data) - 7):
        path.write_bytes(data[:size])
        assert "damaged" in _one_line_error(path)


def test_header_that_lies_about_its_counts_is_one_clear_line(tiny):
    path, _ = tiny
    data = bytearray(path.read_bytes())
    for offset in (8, 16):  # tensor count, then key/value count (uint64 little-endian after magic and version)
        lying = bytearray(data)
        lying[offset:offset + 8] = struct.pack("<Q", 10**9)
        path.write_bytes(bytes(lying))
        assert "damaged" in _one_line_error(path)


def test_not_a_gguf_and_unknown_architecture(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("hello, this is not a model\n" * 10)
    assert "is not a GGUF model file" in _one_line_error(text)
    other = tmp_path / "bloom.gguf"
    write_tiny_llama(other, architecture="bloom")
    assert "'bloom'" in (message := _one_line_error(other)) and "llama" in message
    assert "does not exist" in _one_line_error(tmp_path / "missing.gguf")


def test_a_model_too_big_for_memory_is_refused_before_dequantizing(tiny, monkeypatch):
    path, _ = tiny
    monkeypatch.setattr(gguf_module, "available_memory", lambda: 4096)
    assert "MiB of memory is available" in _one_line_error(path)


def test_second_load_reads_the_float32_cache(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    first = load_gguf(path)
    cached_files = list((tmp_path / "cache" / "gguf").glob("*.safetensors"))
    assert len(cached_files) == 1

    def no_gguf(_path):
        raise AssertionError("the GGUF was read again although the cache is valid")

    monkeypatch.setattr(gguf_module, "_read_gguf", no_gguf)
    second = load_gguf(path)
    np.testing.assert_array_equal(second.parameters.layers[1].qkv_weight, first.parameters.layers[1].qkv_weight)
    np.testing.assert_array_equal(second.parameters.token_embeddings, first.parameters.token_embeddings)
    assert second.config == first.config
    ids = first.tokenizer.encode("the cat").ids
    np.testing.assert_array_equal(second.tokenizer.encode("the cat").ids, ids)
    forward = family_of(first.parameters).forward
    np.testing.assert_array_equal(forward(second.parameters, ids).next_logits,
                                  forward(first.parameters, ids).next_logits)


def test_a_damaged_cache_is_rebuilt_not_trusted(tiny, tmp_path):
    path, _ = tiny
    reference = load_gguf(path).parameters.final_norm
    cache_file = next((tmp_path / "cache" / "gguf").glob("*.safetensors"))
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    np.testing.assert_array_equal(load_gguf(path).parameters.final_norm, reference)
    assert cache_file.stat().st_size > 100  # written again, whole


def test_an_edited_file_is_not_served_from_an_old_cache(tiny, tmp_path):
    path, _ = tiny
    first = load_gguf(path).parameters.final_norm
    write_tiny_llama(path, seed=5)
    assert not np.array_equal(load_gguf(path).parameters.final_norm, first)
    entries = sorted(p.name for p in (tmp_path / "cache" / "gguf").iterdir())
    assert len(entries) == 2, f"the old version's entry is removed: {entries}"  # .safetensors + .tokenizer.json


def test_engine_runs_a_gguf_file_and_truncates_long_text_with_a_notice(tiny):
    path, _ = tiny
    result = Engine().compute(Session(text="the cat " * 50, model=str(path), backend="numpy"))
    assert len(result.query_tokens) == 64  # the file's context_length
    assert any("truncated" in notice and "64" in notice for notice in result.notices)
    assert result.attentions().shape == (LAYERS, HEADS, 64, 64)
    assert result.forward.next_logits.shape == (264,)  # the vocabulary


def test_cli_computes_from_a_gguf_file_and_refuses_a_damaged_one(tiny, tmp_path):
    path, _ = tiny
    out = tmp_path / "out.npz"
    done = run_cli("compute", "the cat sat", "--model", str(path), "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = np.load(out, allow_pickle=False)
    assert list(data["tokens"]) == ["t", "he", " cat", " ", "s", "at"]
    assert data["attentions"].shape == (LAYERS, HEADS, 6, 6) and data["next_logits"].shape == (264,)
    path.write_bytes(path.read_bytes()[:1000])
    done = run_cli("compute", "the cat sat", "--model", str(path), "-o", str(tmp_path / "bad.npz"))
    assert done.returncode == 2 and "damaged" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_cache_write_that_dies_midway_leaves_nothing_to_trust(tiny, tmp_path, monkeypatch):
    """The cache is written under a temporary name and renamed whole: a write cut off (a full disk) leaves no
    cache entry and no temporary file, and the load still returns the GGUF's parameters."""
    path, _ = tiny
    real_save = gguf_module.save_file

    def full_disk(arrays, filename, metadata=None):
        real_save(arrays, filename, metadata=metadata)
        with open(filename, "r+b") as half:
            half.truncate(200)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf_module, "save_file", full_disk)
    model = load_gguf(path)
    folder = tmp_path / "cache" / "gguf"
    assert list(folder.glob("*.safetensors")) == [] and list(folder.glob(".*.tmp")) == []
    monkeypatch.setattr(gguf_module, "save_file", real_save)
    again = load_gguf(path)  # reads the GGUF (no cache), then writes a whole one
    np.testing.assert_array_equal(again.parameters.final_norm, model.parameters.final_norm)
    cached = load_gguf(path)
    assert isinstance(cached.parameters.final_norm, np.ndarray) and not cached.parameters.final_norm.flags.owndata
    np.testing.assert_array_equal(cached.parameters.final_norm, model.parameters.final_norm)


def test_a_damaged_cached_tokenizer_is_rebuilt_from_the_gguf(tiny, tmp_path):
    path, _ = tiny
    ids = load_gguf(path).tokenizer.encode("the cat").ids
    tokenizer_file = next((tmp_path / "cache" / "gguf").glob("*.tokenizer.json"))
    tokenizer_file.write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": ', encoding="utf-8")
    np.testing.assert_array_equal(load_gguf(path).tokenizer.encode("the cat").ids, ids)
    assert tokenizer_file.read_text(encoding="utf-8").startswith("{") and tokenizer_file.stat().st_size > 1000


def test_a_replaced_file_with_the_same_size_and_time_is_not_served_from_the_old_cache(tiny, tmp_path):
    """Timestamps can be coarse (a copy that keeps them, a FAT drive): the key also hashes bytes of the file."""
    path, _ = tiny
    status = path.stat()
    first = load_gguf(path).parameters.final_norm
    write_tiny_llama(path, seed=7)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert path.stat().st_size == status.st_size and path.stat().st_mtime_ns == status.st_mtime_ns
    assert not np.array_equal(load_gguf(path).parameters.final_norm, first)


def test_the_cached_tokenizer_keeps_merges_as_strings_and_tokenizes_the_same(tiny, tmp_path):
    path, _ = tiny
    fresh = load_gguf(path, cache=False).tokenizer
    load_gguf(path)
    document = json.loads(next((tmp_path / "cache" / "gguf").glob("*.tokenizer.json")).read_text(encoding="utf-8"))
    assert document["model"]["merges"][:2] == ["Ġ t", "h e"]  # the form the library reads fastest
    cached = load_gguf(path).tokenizer
    for text in ("the cat sat", "  the  hat<|im_start|>x", "thethe cat\ncat"):
        np.testing.assert_array_equal(cached.encode(text).ids, fresh.encode(text).ids)
