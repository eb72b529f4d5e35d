"""The installers' packed copy of MiniLM's weights (attnstudio.models.packed) is lossless: the same bytes, the same
weights, the same attention."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from attnstudio.errors import ModelLoadError
from attnstudio.models import packed
from attnstudio.models.loader import builtin_model_folder, load_pretrained


def test_awkward_values_unpack_to_the_same_bytes(tmp_path):
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-40, np.finfo(np.float32).max], np.float32)
    tensors = {"w": rng.standard_normal((37, 11)).astype(np.float32), "special": special,
               "ids": np.arange(7, dtype=np.int64).reshape(1, 7), "half": rng.standard_normal(6).astype(np.float16)}
    source = tmp_path / "model.safetensors"
    save_file(tensors, str(source))
    target = tmp_path / "model.safetensors.packed"
    packed.pack(source, target)
    assert packed.unpack(target) == source.read_bytes()


@pytest.fixture(scope="module")
def packed_minilm(tmp_path_factory):
    """The built-in model's folder as the installers carry it: model.safetensors replaced by its packed form."""
    folder = tmp_path_factory.mktemp("minilm-packed")
    original = builtin_model_folder()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        shutil.copy(original / name, folder / name)
    assert packed.main([str(folder / "model.safetensors")]) == 0
    assert not (folder / "model.safetensors").exists()
    return folder


def test_packed_minilm_is_smaller_and_loads_the_same_weights(packed_minilm):
    original_size = (builtin_model_folder() / "model.safetensors").stat().st_size
    packed_size = (packed_minilm / "model.safetensors.packed").stat().st_size
    assert packed_size < 0.86 * original_size, (packed_size, original_size)
    assert packed.unpack(packed_minilm / "model.safetensors.packed") == \
        (builtin_model_folder() / "model.safetensors").read_bytes()
    reference, model = load_pretrained(None), load_pretrained(packed_minilm)
    ours, theirs = list(arrays(model.parameters)), list(arrays(reference.parameters))
    assert len(ours) == len(theirs) > 70  # every tensor of the six layers and the embeddings
    for (name, a), (_, b) in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), name


def arrays(value, name="weights"):
    """(name, array) for every array in a weights dataclass, its layers and its (weight, bias) pairs."""
    if isinstance(value, np.ndarray):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from arrays(item, f"{name}[{index}]")
    elif hasattr(value, "__dataclass_fields__"):
        for field in value.__dataclass_fields__:
            yield from arrays(getattr(value, field), f"{name}.{field}")

@pytest.mark.parametrize("damage", [lambda raw: raw[:-100], lambda raw: raw[:60] + b"x" * 8 + raw[68:],
                                    lambda raw: b"junk" + raw])
def test_a_damaged_packed_file_is_one_clear_error(packed_minilm, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(packed_minilm, folder)
    target = folder / "model.safetensors.packed"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(ModelLoadError, match="damaged") as error:
        load_pretrained(folder)
    assert "\n" not in str(error.value)
