"""Every way to name a model, resolved to the module that reads its file format.

Built-in names ("minilm", "smollm2"), a ``.gguf`` file (:mod:`attnstudio.models.gguf`),
a Hugging Face folder: decoders (:mod:`attnstudio.models.hf_decoder`), T5 encoder-decoders
(:mod:`attnstudio.models.hf_t5`), BERT encoders
(:mod:`attnstudio.models.loader`); a Hugging Face repo id in the local cache or an
Ollama model name (:mod:`attnstudio.models.sources`). Menus and the CLI read
:data:`BUILTIN_MODELS`; nobody keeps a second list.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from attnstudio.core.families import FAMILIES
from attnstudio.errors import ModelLoadError
from attnstudio.models import gguf, hf_decoder, hf_t5, loader, sources
from attnstudio.models.loader import PretrainedModel


@dataclass(frozen=True)
class BuiltinModel:
    key: str  # what the session and the CLI's --model store
    label: str  # what the model menu shows


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.key: model for model in (
        BuiltinModel(loader.BUILTIN_MODEL, "Built-in: all-MiniLM-L6-v2 (encoder)"),
        BuiltinModel(gguf.SMOLLM2, "Built-in: SmolLM2-135M (decoder)"),
    )
}
GGUF_SUFFIX = ".gguf"


def is_gguf_reference(reference: str | Path) -> bool:
    return str(reference).lower().endswith(GGUF_SUFFIX)


def supported_families() -> str:
    """One phrase naming what attnstudio runs, for every "unsupported model" message."""
    return "the model families " + ", ".join(FAMILIES)


def resolve_reference(reference: str | Path) -> Path:
    """A path, a Hugging Face repo id in the local cache or an Ollama name -> the folder or GGUF file it names."""
    path = Path(reference).expanduser()
    if path.exists():
        return path
    text = str(reference)
    snapshot = sources.resolve_hf_repo(text)
    if snapshot is not None:
        return snapshot
    blob = sources.resolve_ollama(text)
    if blob is not None:
        return blob
    if sources.REPO_ID.match(text) or sources.OLLAMA_NAME.match(text) and ":" in text:
        raise ModelLoadError(f"{text!r} is neither a folder nor a file, nor in the Hugging Face cache "
                             f"({', '.join(map(str, sources.hf_cache_roots()))}) or the Ollama store "
                             f"({sources.ollama_root()})")
    kind = "model file" if is_gguf_reference(path) else "model folder"
    raise ModelLoadError(f"{kind} {path} does not exist (moved or deleted?)")


def load_model(reference: str | Path | None = None) -> PretrainedModel:
    """A built-in name, a path (.gguf or folder), a cached repo id or an Ollama name -> the loaded model."""
    if reference is None or str(reference) == loader.BUILTIN_MODEL:
        return loader.load_pretrained(reference)
    if str(reference) == gguf.SMOLLM2:
        return gguf.load_gguf(gguf.smollm2_path(), name=gguf.SMOLLM2)
    path = resolve_reference(reference)
    if path.is_file() and (is_gguf_reference(path) or _is_gguf_file(path)):
        return gguf.load_gguf(path, name=None if is_gguf_reference(path) else str(reference))
    if path.is_file():
        raise ModelLoadError(f"{path.name} is neither a .gguf file nor a model folder; attnstudio runs "
                             f"{supported_families()}")
    folder = loader.resolve_model_folder(path)
    model_type = hf_decoder.read_model_type(folder)
    if model_type in hf_decoder.DECODER_MODEL_TYPES:
        model = hf_decoder.load_hf_decoder(folder)
    elif model_type in hf_t5.T5_MODEL_TYPES:
        model = hf_t5.load_hf_t5(folder)
    elif model_type in loader.SUPPORTED_MODEL_TYPES or model_type is None:
        model = loader.load_pretrained(folder)
    else:
        raise ModelLoadError(f"{folder.name} is a {model_type!r} model; attnstudio runs {supported_families()}")
    if path != Path(reference).expanduser():  # found in a cache: name it the way the user did
        model.name = str(reference)
    return model


def _is_gguf_file(path: Path) -> bool:
    """True when the file starts with GGUF's magic bytes (Ollama's blobs have no suffix)."""
    try:
        with path.open("rb") as stream:
            return stream.read(4) == b"GGUF"
    except OSError:
        return False


class LoadedModels:
    """:func:`load_model`, remembered (switching back to a model is instant): the newest ``size`` models.

    Safe from several threads: the app preloads a model in one thread while the compute worker may ask for it
    in another; a model is read once, the second caller waits for the first. A failed load is not remembered.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._models: OrderedDict[str | None, PretrainedModel] = OrderedDict()
        self._lock = threading.Lock()  # guards _models and _gates
        self._gates: dict[str | None, threading.Lock] = {}  # one per reference while it loads

    def __call__(self, reference: str | None = None) -> PretrainedModel:
        with self._lock:
            if reference in self._models:
                self._models.move_to_end(reference)
                return self._models[reference]
            gate = self._gates.setdefault(reference, threading.Lock())
        with gate:  # a second caller waits here for the first one's load
            model = self.loaded(reference)
            if model is None:
                model = load_model(reference)
                with self._lock:
                    self._models[reference] = model
                    while len(self._models) > self.size:
                        self._models.popitem(last=False)
        with self._lock:
            self._gates.pop(reference, None)
        return model

    def loaded(self, reference: str | None = None) -> PretrainedModel | None:
        """The model if it is loaded already, else None (never loads: safe on the GUI thread)."""
        with self._lock:
            return self._models.get(reference)

    def cache_clear(self) -> None:
        with self._lock:
            self._models.clear()


load_model_cached = LoadedModels()
