"""Models named the way users name them: a Hugging Face repo id in the local cache, an Ollama name."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from attnstudio.errors import ModelLoadError
from attnstudio.models import sources
from attnstudio.models.loader import builtin_model_folder
from attnstudio.models.registry import load_model
from tests.core.tiny_gguf import write_tiny_llama

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Empty places: HF_HOME, HF_HUB_CACHE unset, a home without caches, an Ollama store, an attnstudio cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "attnstudio-cache"))
    return home


def cache_entry(root, repo_id: str, revision: str = "0123abcd", *, refs_main: bool = True):
    """A Hugging Face cache entry whose snapshot links to the built-in MiniLM's files (as the hub links blobs)."""
    entry = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = entry / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (snapshot / name).symlink_to(builtin_model_folder() / name)
    if refs_main:
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text(revision + "\n")
    return snapshot


def ollama_model(root, name: str, tag: str, gguf_path, namespace: str = "library"):
    data = gguf_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    manifest = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layers = [{"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 1},
              {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(data)}]
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return root / "blobs" / f"sha256-{digest}"


@pytest.mark.parametrize("where", ["default", "HF_HOME", "HF_HUB_CACHE"])
def test_a_repo_id_loads_from_the_hugging_face_cache(stores, tmp_path, monkeypatch, where):
    root = {"default": stores / ".cache" / "huggingface" / "hub", "HF_HOME": tmp_path / "hf-home" / "hub",
            "HF_HUB_CACHE": tmp_path / "hub-cache"}[where]
    if where == "HF_HOME":
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    elif where == "HF_HUB_CACHE":
        monkeypatch.setenv("HF_HUB_CACHE", str(root))
    snapshot = cache_entry(root, MINILM)
    model = load_model(MINILM)
    assert model.folder == snapshot and model.name == MINILM and model.num_layers == 6
    assert model.tokenizer.encode("hello").tokens == ["[CLS]", "hello", "[SEP]"]


def test_refs_main_wins_over_a_newer_snapshot_and_without_it_the_newest_is_taken(stores):
    root = stores / ".cache" / "huggingface" / "hub"
    pinned = cache_entry(root, MINILM, "aaaa")
    newer = root / f"models--{MINILM.replace('/', '--')}" / "snapshots" / "bbbb"
    newer.mkdir()
    (newer / "config.json").write_text("{}")
    assert sources.resolve_hf_repo(MINILM) == pinned
    (root / f"models--{MINILM.replace('/', '--')}" / "refs" / "main").unlink()
    assert sources.resolve_hf_repo(MINILM) == newer


def test_a_repo_id_missing_from_every_cache_is_one_line_naming_the_places(stores):
    with pytest.raises(ModelLoadError, match="nor in the Hugging Face cache") as error:
        load_model("nobody/nothing")
    assert "\n" not in str(error.value) and ".ollama" in str(error.value)


def test_an_unsupported_cached_model_names_the_supported_families(stores):
    snapshot = cache_entry(stores / ".cache" / "huggingface" / "hub", "google/t5-small")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelLoadError, match=r"'t5' model; attnstudio runs the model families bert, llama"):
        load_model("google/t5-small")


def test_an_ollama_name_loads_its_gguf_blob(stores, tmp_path):
    tensors_path = tmp_path / "tiny.gguf"
    write_tiny_llama(tensors_path)
    blob = ollama_model(stores / ".ollama" / "models", "smollm2", "135m", tensors_path)
    model = load_model("smollm2:135m")
    reference = load_model(str(tensors_path))
    assert model.folder == blob and model.name == "smollm2:135m"
    np.testing.assert_array_equal(model.parameters.layers[0].qkv_weight, reference.parameters.layers[0].qkv_weight)
    ids = model.tokenizer.encode("the cat").ids
    np.testing.assert_array_equal(ids, reference.tokenizer.encode("the cat").ids)


def test_an_ollama_name_without_a_tag_means_latest_and_namespaces_work(stores, tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    write_tiny_llama(tmp_path / "tiny.gguf")
    latest = ollama_model(tmp_path / "ollama", "tiny", "latest", tmp_path / "tiny.gguf")
    assert sources.resolve_ollama("tiny") == latest
    other = ollama_model(tmp_path / "ollama", "tiny", "q8", tmp_path / "tiny.gguf", namespace="someone")
    assert sources.resolve_ollama("someone/tiny:q8") == other
    assert sources.resolve_ollama("tiny:missing") is None and sources.resolve_ollama("../../etc:passwd") is None


def test_an_ollama_manifest_without_a_model_layer_is_not_found(stores, tmp_path):
    write_tiny_llama(tmp_path / "tiny.gguf")
    root = stores / ".ollama" / "models"
    blob = ollama_model(root, "tiny", "latest", tmp_path / "tiny.gguf")
    blob.unlink()  # the manifest names a blob that is gone
    with pytest.raises(ModelLoadError, match="Ollama store"):
        load_model("tiny:latest")


def test_discover_lists_the_cached_and_ollama_models(stores, tmp_path):
    cache_entry(stores / ".cache" / "huggingface" / "hub", MINILM)
    write_tiny_llama(tmp_path / "tiny.gguf")
    blob = ollama_model(stores / ".ollama" / "models", "smollm2", "135m", tmp_path / "tiny.gguf")
    found = {model.reference: model for model in sources.discover_models()}
    assert set(found) == {MINILM, "smollm2:135m"}
    assert found["smollm2:135m"].path == blob and found["smollm2:135m"].label == "Ollama: smollm2:135m"
    assert found[MINILM].label == f"Hugging Face cache: {MINILM}"


def test_nothing_found_in_empty_places(stores):
    assert sources.discover_models() == []
