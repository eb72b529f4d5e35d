"""Tokenizers from a GGUF file's ``tokenizer.ggml.*`` fields, built with the ``tokenizers`` library.

Decoders: GGUF stores a GPT-2-style byte-level BPE as its vocabulary (``tokens``), ``merges``,
token types (3 = control: special tokens such as ``<|im_start|>``) and the name of
llama.cpp's pre-tokenizer (``pre``). The regular expressions below are llama.cpp's
for each pre-tokenizer name (``llama-vocab.cpp``); the byte-level alphabet and BPE
merging are the library's own.

T5 (model ``t5``): a SentencePiece unigram: pieces, their log-probability ``scores``, token types, the
normaliser's ``precompiled_charsmap``, ``add_space_prefix`` and ``remove_extra_whitespaces``; rebuilt the way
transformers converts a T5 ``spiece.model`` (Precompiled normaliser, WhitespaceSplit + Metaspace, Unigram,
``</s>`` after a text when ``add_eos_token``).
"""
from __future__ import annotations

import json

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from attnstudio.errors import ModelLoadError
from attnstudio.models.loader import TextTokenizer, TokenizedText, _has_surrogates, encode_one, guarded_encode

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_PATTERN = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's pre-tokenizer name -> the expressions it splits with, in order.
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt2": (GPT2_PATTERN,),
    "smollm": (r"\p{N}", GPT2_PATTERN),
    "starcoder": (r"\p{N}", GPT2_PATTERN),
    "refact": (r"\p{N}", GPT2_PATTERN),
    "llama-bpe": (LLAMA3_PATTERN,),
    "qwen2": (LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}"),),  # llama.cpp's: digits one by one
}
TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_BYTE = 1, 2, 3, 6  # gguf.TokenType
VISIBLE_WHITESPACE = str.maketrans({"\n": "↵", "\t": "⇥", "\r": "⏎"})


def tokenizer_json_from_fields(fields: dict) -> str:
    """A ``tokenizers`` JSON document for the GGUF fields ``fields`` (key -> value)."""
    kind = fields.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(f"the GGUF tokenizer is {kind!r}; attnstudio reads byte-level BPE ('gpt2') tokenizers")
    pre = fields.get("tokenizer.ggml.pre", "gpt2")
    if pre not in PRE_TOKENIZERS:
        raise ModelLoadError(f"the GGUF pre-tokenizer {pre!r} is not supported; attnstudio knows "
                             f"{', '.join(PRE_TOKENIZERS)}")
    tokens, merges = fields.get("tokenizer.ggml.tokens"), fields.get("tokenizer.ggml.merges")
    if not isinstance(tokens, list) or not isinstance(merges, list) or not tokens:
        raise ModelLoadError("the GGUF file has no tokenizer vocabulary or merges")
    token_types = fields.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(token_types) != len(tokens):
        raise ModelLoadError(f"the GGUF tokenizer lists {len(tokens)} tokens but {len(token_types)} token types")
    try:
        vocab = {token: index for index, token in enumerate(tokens)}
        pairs = [tuple(merge.split(" ", 1)) for merge in merges]
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in PRE_TOKENIZERS[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                      for token, kind in zip(tokens, token_types, strict=True)
                                      if kind == TOKEN_TYPE_CONTROL])
        return _merges_as_strings(tokenizer.to_str())
    except Exception as error:  # noqa: BLE001 - the library raises several types for inconsistent vocabularies
        raise ModelLoadError(f"cannot build the tokenizer from the GGUF file: {error}") from None


def _merges_as_strings(document: str) -> str:
    """The same tokenizer with its merges written "a b" instead of ["a", "b"] when no merged token holds a space
    (byte-level BPE writes spaces as Ġ): the library reads that form in 60% of the time, and reading runs on one
    call that holds the GIL (0.1-0.2 s for SmolLM2's 48,900 merges: the window cannot repaint meanwhile)."""
    parsed = json.loads(document)
    merges = parsed.get("model", {}).get("merges")
    if not merges or not all(isinstance(pair, list) and len(pair) == 2 and " " not in pair[0] + pair[1]
                             for pair in merges):
        return document
    parsed["model"]["merges"] = [f"{first} {second}" for first, second in merges]
    return json.dumps(parsed, ensure_ascii=False)


def unigram_tokenizer_from_fields(fields: dict) -> Tokenizer:
    """A SentencePiece unigram (``tokenizer.ggml.model`` = ``t5``) as a ``tokenizers`` Tokenizer."""
    kind = fields.get("tokenizer.ggml.model")
    if kind != "t5":
        raise ModelLoadError(f"the GGUF tokenizer is {kind!r}; attnstudio reads T5 models with a SentencePiece "
                             f"unigram ('t5') tokenizer")
    tokens, scores = fields.get("tokenizer.ggml.tokens"), fields.get("tokenizer.ggml.scores")
    if not isinstance(tokens, list) or not tokens or not isinstance(scores, list):
        raise ModelLoadError("the GGUF file has no tokenizer vocabulary or scores")
    token_types = fields.get("tokenizer.ggml.token_type") or [TOKEN_TYPE_NORMAL] * len(tokens)
    if not len(tokens) == len(scores) == len(token_types):
        raise ModelLoadError(f"the GGUF tokenizer lists {len(tokens)} tokens, {len(scores)} scores and "
                             f"{len(token_types)} token types")
    unknown = fields.get("tokenizer.ggml.unknown_token_id")
    if unknown is None:
        unknown = next((index for index, kind in enumerate(token_types) if kind == TOKEN_TYPE_UNKNOWN), None)
    eos = fields.get("tokenizer.ggml.eos_token_id")
    add_eos = bool(fields.get("tokenizer.ggml.add_eos_token", True))  # llama.cpp's default for T5 vocabularies
    for name, value in (("unknown", unknown), ("end-of-text", eos if add_eos else 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(tokens):
            raise ModelLoadError(f"the GGUF tokenizer has no valid {name} token id")
    try:
        vocabulary = [(str(token), float(score)) for token, score in zip(tokens, scores, strict=True)]
        tokenizer = Tokenizer(models.Unigram(vocabulary, unk_id=int(unknown),
                                             byte_fallback=TOKEN_TYPE_BYTE in token_types))
        charsmap = fields.get("tokenizer.ggml.precompiled_charsmap")
        if charsmap:
            tokenizer.normalizer = normalizers.Precompiled(bytes(charsmap))
        prepend = "always" if fields.get("tokenizer.ggml.add_space_prefix", True) else "never"
        metaspace = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=prepend, split=True)
        tokenizer.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
                                   if fields.get("tokenizer.ggml.remove_extra_whitespaces", True) else metaspace)
        tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=prepend, split=True)
        tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                      for token, kind in zip(tokens, token_types, strict=True)
                                      if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN)])
        if add_eos:
            end = str(tokens[eos])
            tokenizer.post_processor = processors.TemplateProcessing(
                single=["$A", end], pair=["$A", end, "$B", end], special_tokens=[(end, eos)])
        return tokenizer
    except Exception as error:  # noqa: BLE001 - the library raises several types for inconsistent vocabularies
        raise ModelLoadError(f"cannot build the tokenizer from the GGUF file: {str(error)[:160]}") from None


class DecoderTokenizer(TextTokenizer):
    """A decoder's tokenizer: an optional BOS token first; long texts keep their beginning."""

    def __init__(self, tokenizer, max_length: int, *, pad_id: int, bos_id: int | None,
                 own_special_tokens: bool = False):
        super().__init__(tokenizer, max_length)
        self.pad_id = pad_id
        self.bos_id = bos_id
        self.own_special_tokens = own_special_tokens  # a tokenizer.json's post-processor adds BOS itself

    @classmethod
    def from_json(cls, document: str, settings: dict) -> DecoderTokenizer:
        return cls(Tokenizer.from_str(document), int(settings["max_length"]), pad_id=int(settings["pad_id"]),
                   bos_id=settings.get("bos_id"))

    def encode(self, text: str) -> TokenizedText:
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
        encoding = guarded_encode(lambda t: encode_one(self._tokenizer, t, add_special_tokens=self.own_special_tokens),
                                  text)
        ids = list(encoding.ids)
        if self.bos_id is not None:
            ids = [self.bos_id] + ids
        truncated_from = None
        if len(ids) > self.max_length:
            truncated_from = len(ids)
            ids = ids[:self.max_length]
        return TokenizedText([self.readable_token(i) for i in ids], np.asarray(ids, dtype=np.int64), truncated_from)

    def raw_tokens(self, ids) -> list[str]:
        """The vocabulary's own strings ('Ġcat'), as Hugging Face's convert_ids_to_tokens gives them."""
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def readable_token(self, token_id: int) -> str:
        """The text a token stands for (' cat'), with line breaks and tabs drawn as ↵ and ⇥; a token that is
        only part of a UTF-8 character keeps its byte-level spelling."""
        text = self.decode_token(token_id)
        if "\ufffd" in text or not text:
            return self._tokenizer.id_to_token(int(token_id))
        return text.translate(VISIBLE_WHITESPACE)

    def decode(self, ids) -> str:
        """The text a run of tokens stands for (bytes split across tokens joined again)."""
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def decode_token(self, token_id: int) -> str:
        """The text one token stands for (byte-level tokens decoded: 'Ġcat' -> ' cat')."""
        return self._tokenizer.decode([int(token_id)], skip_special_tokens=False)


def tokenizer_settings(fields: dict, context_length: int) -> dict:
    """The few numbers a :class:`DecoderTokenizer` needs besides its JSON."""
    bos = fields.get("tokenizer.ggml.bos_token_id")
    add_bos = bool(fields.get("tokenizer.ggml.add_bos_token", False))
    pad = fields.get("tokenizer.ggml.padding_token_id", fields.get("tokenizer.ggml.eos_token_id", 0))
    return {"max_length": int(context_length), "pad_id": int(pad),
            "bos_id": int(bos) if add_bos and bos is not None else None}
