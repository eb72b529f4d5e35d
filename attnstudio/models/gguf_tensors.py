"""Taking a GGUF file's dequantized tensors one by one, checked against the shapes its header implies (every
GGUF architecture's builder, :mod:`attnstudio.models.gguf_architectures` and :mod:`attnstudio.models.gguf_t5`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnstudio.errors import ModelLoadError


def tensor_getter(tensors: dict[str, np.ndarray], path: Path) -> Callable[[str, tuple[int, ...]], np.ndarray]:
    """get(name, shape): the tensor, removed from ``tensors`` (what is left was not used); a missing tensor or a
    shape the header does not imply is one ModelLoadError line naming the file."""
    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            tensor = tensors.pop(name)
        except KeyError:
            raise ModelLoadError(f"{path.name} lacks the tensor {name!r}") from None
        if tensor.shape != shape:
            raise ModelLoadError(f"{path.name}: tensor {name} has shape {tensor.shape}, the header implies {shape}")
        return tensor
    return get
