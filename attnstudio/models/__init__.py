"""Loading pretrained parameters and tokenizers (safetensors, tokenizers, Hugging Face folders and cache)."""
from attnstudio.models.loader import BUILTIN_MODEL, PretrainedModel, TextTokenizer, load_pretrained

__all__ = ["BUILTIN_MODEL", "PretrainedModel", "TextTokenizer", "load_pretrained"]
