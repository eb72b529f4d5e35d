"""Every way to name a model, resolved to the module that reads its file format.

Built-in names ("minilm", "smollm2"), a ``.gguf`` file (:mod:`attnstudio.models.gguf`)
or a Hugging Face folder: Llama decoders (:mod:`attnstudio.models.hf_decoder`), BERT
encoders (:mod:`attnstudio.models.loader`). Menus and the CLI read
:data:`BUILTIN_MODELS`; nobody keeps a second list.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from attnstudio.models import gguf, hf_decoder, loader
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


def load_model(reference: str | Path | None = None) -> PretrainedModel:
    """A built-in name, a .gguf file or a Hugging Face folder -> the loaded model (parameters + tokenizer)."""
    if reference is not None and str(reference) == gguf.SMOLLM2:
        return gguf.load_gguf(gguf.smollm2_path(), name=gguf.SMOLLM2)
    if reference is not None and is_gguf_reference(reference):
        return gguf.load_gguf(reference)
    if reference is not None and str(reference) != loader.BUILTIN_MODEL:
        folder = loader.resolve_model_folder(reference)
        if hf_decoder.read_model_type(folder) in hf_decoder.DECODER_MODEL_TYPES:
            return hf_decoder.load_hf_decoder(folder)
    return loader.load_pretrained(reference)


@lru_cache(maxsize=4)
def load_model_cached(reference: str | None = None) -> PretrainedModel:
    """:func:`load_model`, remembered: switching back to a model is instant."""
    return load_model(reference)
