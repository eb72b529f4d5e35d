"""Where models live on this machine: the Hugging Face cache and the Ollama store.

A Hugging Face repo id (``org/name``) is looked up offline the way ``from_pretrained``
does: in ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` and ``~/.cache/huggingface/hub``, as
``models--org--name/snapshots/<revision>/`` (the revision ``refs/main`` names, else the
newest snapshot holding a config.json). An Ollama name (``smollm2:135m``, tag ``latest``
when left out) is read from ``$OLLAMA_MODELS`` or ``~/.ollama/models``: its manifest's
model layer is a GGUF blob. :func:`discover_models` lists what both places hold, for
the model picker.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_REGISTRY = "registry.ollama.ai"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
OLLAMA_NAME = re.compile(r"^(?:[\w.-]+/)?[\w.-]+(?::[\w.-]+)?$")


@dataclass(frozen=True)
class FoundModel:
    reference: str  # what the session stores and load_model resolves: "org/name" or "name:tag"
    label: str  # what the model picker shows
    path: Path  # the snapshot folder or the GGUF blob


def hf_cache_roots() -> list[Path]:
    """The Hugging Face hub caches to search, most specific first, without duplicates."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    return list(dict.fromkeys(roots))


def snapshot_of(entry: Path) -> Path | None:
    """A cache entry ``models--org--name`` -> its snapshot folder with config.json (refs/main first)."""
    snapshots = entry / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = entry / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text(encoding="utf-8", errors="replace").strip()
        if revision and (snapshots / revision / "config.json").is_file():
            return snapshots / revision
    candidates = [p for p in snapshots.iterdir() if (p / "config.json").is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def resolve_hf_repo(repo_id: str) -> Path | None:
    """``org/name`` -> its snapshot folder in the first cache that holds it, or None."""
    if not REPO_ID.match(repo_id):
        return None
    entry_name = "models--" + repo_id.replace("/", "--")
    for root in hf_cache_roots():
        snapshot = snapshot_of(root / entry_name)
        if snapshot is not None:
            return snapshot
    return None


def ollama_root() -> Path:
    if os.environ.get("OLLAMA_MODELS"):
        return Path(os.environ["OLLAMA_MODELS"]).expanduser()
    return Path.home() / ".ollama" / "models"


def _ollama_manifest(name: str) -> Path:
    """``[namespace/]model[:tag]`` -> its manifest path (namespace 'library', tag 'latest' by default)."""
    model, _, tag = name.partition(":")
    namespace, _, model = model.rpartition("/")
    return ollama_root() / "manifests" / OLLAMA_REGISTRY / (namespace or "library") / model / (tag or "latest")


def _model_blob(manifest: Path) -> Path | None:
    """The GGUF blob a manifest's model layer names, or None when the manifest is unreadable or has none."""
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
            digest = str(layer.get("digest", ""))
            if re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                blob = ollama_root() / "blobs" / digest.replace(":", "-")
                return blob if blob.is_file() else None
    return None


def resolve_ollama(name: str) -> Path | None:
    """An Ollama model name -> the GGUF blob it names, or None."""
    if not OLLAMA_NAME.match(name) or ".." in name:
        return None
    manifest = _ollama_manifest(name)
    return _model_blob(manifest) if manifest.is_file() else None


def discover_models() -> list[FoundModel]:
    """Every model in the Hugging Face caches and the Ollama store (whether attnstudio runs it is checked on open)."""
    found: dict[str, FoundModel] = {}
    for root in hf_cache_roots():
        if not root.is_dir():
            continue
        for entry in sorted(root.glob("models--*--*")):
            repo_id = entry.name.removeprefix("models--").replace("--", "/", 1)
            snapshot = snapshot_of(entry)
            if snapshot is not None and repo_id not in found:
                found[repo_id] = FoundModel(repo_id, f"Hugging Face cache: {repo_id}", snapshot)
    library = ollama_root() / "manifests" / OLLAMA_REGISTRY
    if library.is_dir():
        for manifest in sorted(library.glob("*/*/*")):
            namespace, model, tag = manifest.parts[-3:]
            name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
            blob = _model_blob(manifest) if manifest.is_file() else None
            if blob is not None and name not in found:
                found[name] = FoundModel(name, f"Ollama: {name}", blob)
    return list(found.values())
