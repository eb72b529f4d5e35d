"""GGUF files of the qwen2 and gpt2 architectures (written by gguf's GGUFWriter from the tiny Hugging Face
checkpoints, as llama.cpp's converter names and lays them out) run exactly as the checkpoints themselves."""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from attnstudio.core.families import family_of
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf import load_gguf
from attnstudio.models.registry import load_model
from tests.core.test_cli import run_cli
from tests.core.tiny_gguf import write_gguf_from_hf

DATA = Path(__file__).resolve().parent.parent / "data"
TEXT = "The cat sat on the mat because it was tired. The dog did not."
FAMILIES = {"qwen2": "llama", "gpt2": "gpt2"}  # GGUF architecture -> the family that runs it


@pytest.fixture(params=list(FAMILIES))
def converted(request, tmp_path):
    path = tmp_path / f"tiny-{request.param}.gguf"
    write_gguf_from_hf(DATA / f"tiny-{request.param}", path)
    return request.param, path


def test_a_converted_gguf_matches_the_references_and_its_checkpoint(converted):
    architecture, path = converted
    model = load_gguf(path, cache=False)
    family = family_of(model.parameters)
    assert family.name == FAMILIES[architecture]
    reference = np.load(DATA / f"tiny-{architecture}.npz")
    ids = model.tokenizer.encode(TEXT).ids
    np.testing.assert_array_equal(ids, reference["input_ids"])  # the tokenizer rebuilt from tokenizer.ggml.*
    result = family.forward(model.parameters, ids)
    np.testing.assert_allclose(result.attentions(), reference["attentions"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.next_logits, reference["last_logits"], rtol=0, atol=1e-4)
    folder = load_model(str(DATA / f"tiny-{architecture}"))
    from_folder = family.forward(folder.parameters, ids)
    np.testing.assert_allclose(result.attentions(), from_folder.attentions(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.next_logits, from_folder.next_logits, rtol=0, atol=1e-6)
    for a, b in zip(result.hidden_states, from_folder.hidden_states, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_qwen2_keeps_its_biases_through_the_float32_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "qwen2.gguf"
    write_gguf_from_hf(DATA / "tiny-qwen2", path)
    first, second = load_gguf(path), load_gguf(path)
    assert list((tmp_path / "cache" / "gguf").glob("*.safetensors"))  # the second load came from the cache
    for a, b in zip(first.parameters.layers, second.parameters.layers, strict=True):
        assert a.qkv_bias is not None and np.abs(a.qkv_bias).max() > 0
        np.testing.assert_array_equal(a.qkv_bias, b.qkv_bias)
    ids = first.tokenizer.encode(TEXT).ids
    family = family_of(first.parameters)
    np.testing.assert_array_equal(family.forward(first.parameters, ids).next_logits,
                                  family.forward(second.parameters, ids).next_logits)


def test_a_quantized_gpt2_gguf_is_dequantized_in_the_checkpoints_layout(tmp_path):
    path = tmp_path / "gpt2-q8.gguf"
    write_gguf_from_hf(DATA / "tiny-gpt2", path, quantized=True)
    model = load_gguf(path, cache=False)
    hf = {name.removeprefix("transformer."): value
          for name, value in load_file(str(DATA / "tiny-gpt2" / "model.safetensors")).items()}
    q8 = gguf.GGMLQuantizationType.Q8_0
    for index, layer in enumerate(model.parameters.layers):  # Conv1D (in, out) -> GGUF (out, in) -> x @ w (in, out)
        c_attn = hf[f"h.{index}.attn.c_attn.weight"]
        expected = gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(c_attn.T), q8), q8).T
        np.testing.assert_array_equal(layer.qkv_weight, expected)
        assert not np.array_equal(layer.qkv_weight, c_attn)  # really quantized
    ids = model.tokenizer.encode(TEXT).ids
    assert np.isfinite(family_of(model.parameters).forward(model.parameters, ids).next_logits).all()


def test_a_gpt2_whose_head_is_not_tied_is_one_clear_line(tmp_path, monkeypatch):
    original = gguf.GGUFWriter.add_tensor

    def untie(self, name, tensor, *args, **kwargs):
        if name == "output.weight":
            tensor = tensor + 1.0
        return original(self, name, tensor, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", untie)
    path = tmp_path / "untied.gguf"
    write_gguf_from_hf(DATA / "tiny-gpt2", path)
    with pytest.raises(ModelLoadError, match="tied to the token embeddings") as caught:
        load_gguf(path, cache=False)
    assert "\n" not in str(caught.value)


def test_the_cli_computes_and_profiles_with_converted_ggufs(tmp_path):
    for architecture in FAMILIES:
        path = tmp_path / f"tiny-{architecture}.gguf"
        write_gguf_from_hf(DATA / f"tiny-{architecture}", path)
        out = tmp_path / f"{architecture}.npz"
        done = run_cli("compute", TEXT, "--model", str(path), "--layers", "2", "-o", str(out))
        assert done.returncode == 0, done.stderr
        data = np.load(out)
        reference = np.load(DATA / f"tiny-{architecture}.npz")
        np.testing.assert_allclose(data["attentions"][0], reference["attentions"][1], rtol=0, atol=1e-5)
        np.testing.assert_allclose(data["next_logits"], reference["last_logits"], rtol=0, atol=1e-4)
    report = tmp_path / "profile.json"
    done = run_cli("profile", "--model", str(tmp_path / "tiny-qwen2.gguf"), "--n", "16", "--kernels", "naive",
                   "--repeats", "1", "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert "4 heads of width 8" in done.stderr
    config = json.loads(report.read_text())["config"]
    assert (config["heads"], config["d_k"]) == (4, 8)
    done = run_cli("profile", "--model", str(tmp_path / "missing.gguf"), "--n", "16")
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "does not exist" in done.stderr
