"""The engine's experiments on the real and synthetic models, and loading model folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from attnstudio.core.masks import MaskSpec
from attnstudio.core.synthetic import sinusoidal_positions
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting, ModelLoadError
from attnstudio.models.loader import builtin_model_folder, load_pretrained
from attnstudio.session import Session

ENGINE = Engine()
TEXT = "The cat sat on the mat because it was tired."


def compute(**fields):
    return ENGINE.compute(Session(**{"text": TEXT, "backend": "numpy", **fields}))


def test_causal_mask_applies_to_every_layer_of_the_real_model():
    attentions = compute(mask=MaskSpec("causal")).attentions()
    assert attentions.shape == (6, 12, 13, 13)
    assert (np.triu(attentions, 1) == 0).all()
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("heads", [1, 3, 6, 24])
def test_resplitting_the_pretrained_heads(heads):
    result = compute(heads=heads)
    assert result.attentions().shape == (6, heads, 13, 13)
    assert result.d_k == 384 // heads
    np.testing.assert_allclose(result.attentions().sum(-1), 1.0, atol=1e-5)


def test_resplitting_into_a_count_that_does_not_divide_the_width_is_refused():
    with pytest.raises(InvalidSetting, match="divide"):
        compute(heads=5)


def test_padding_mask_pads_and_hides_the_padding():
    result = compute(mask=MaskSpec("padding", pad_to=20))
    assert result.query_tokens[-7:] == ["[PAD]"] * 7 and len(result.query_tokens) == 20
    attentions = result.attentions()
    assert (attentions[..., 13:] == 0).all()
    np.testing.assert_allclose(attentions[..., :13].sum(-1), 1.0, atol=1e-5)


def test_window_and_custom_cells_on_the_real_model():
    result = compute(mask=MaskSpec("window", width=2, blocked_cells=((5, 4),)))
    attentions = result.attentions()
    assert attentions[:, :, 0, 3:].max() == 0
    assert (attentions[:, :, 5, 4] == 0).all()


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_other_score_functions_and_temperature(score):
    base = compute().attentions()
    changed = compute(score=score).attentions()
    assert not np.allclose(base, changed)
    np.testing.assert_allclose(changed.sum(-1), 1.0, atol=1e-5)
    hot = compute(temperature=0.25).attentions()
    assert hot.max(-1).mean() > base.max(-1).mean(), "lower temperature sharpens the rows"


def test_synthetic_model_is_seeded_and_shaped_by_its_settings():
    first = compute(model="synthetic", heads=3, d_k=5, d_model=24, seed=11)
    assert first.attentions().shape == (1, 3, 13, 13)
    assert first.step(0, "queries").shape == (3, 13, 5)
    again = compute(model="synthetic", heads=3, d_k=5, d_model=24, seed=11)
    np.testing.assert_array_equal(first.attentions(), again.attentions())
    other = compute(model="synthetic", heads=3, d_k=5, d_model=24, seed=12)
    assert not np.allclose(first.attentions(), other.attentions())


def test_synthetic_vectors_keep_pretrained_similarity():
    result = compute(model="synthetic", text="cat cats car", heads=1, d_k=32, d_model=256)
    x = result.forward.hidden_states[0] - sinusoidal_positions(5, 256)  # token part of the inputs
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cat, cats, car = x[1], x[2], x[3]
    assert cat @ cats > cat @ car, "the pretrained table puts cat nearer cats than car, and so does the projection"


@pytest.mark.parametrize("settings,match", [({"heads": 0}, "heads"), ({"d_k": 0}, "d_k"),
                                            ({"d_model": 10**6}, "d_model"), ({"seed": -1}, "seed"),
                                            ({"temperature": 0.0}, "temperature"), ({"text": "  "}, "empty")])
def test_bad_synthetic_settings_are_refused(settings, match):
    with pytest.raises(InvalidSetting, match=match):
        compute(model="synthetic", **settings)


@pytest.mark.parametrize("model", ["minilm", "synthetic"])
def test_cross_attention(model):
    result = compute(model=model, pair_text="A dog slept on the rug.", mask=MaskSpec("causal"))
    n_q, n_k = 13, len(result.key_tokens)
    assert result.key_tokens[1:3] == ["a", "dog"]
    attentions = result.attentions()
    assert attentions.shape[-2:] == (n_q, n_k)
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-5)
    assert (np.triu(attentions, 1) == 0).all()


def test_long_input_is_truncated_with_a_notice():
    result = compute(text="word " * 700)
    assert len(result.query_tokens) == 512 and result.query_tokens[-1] == "[SEP]"
    assert result.notices and "truncated" in result.notices[0]


def test_lone_surrogates_and_nul_do_not_break_the_tokenizer():
    result = compute(text="a\ud800b\x00c \u202eabc")
    assert np.isfinite(result.attentions()).all()


# --- loading folders --------------------------------------------------------------------------------------
@pytest.fixture
def model_copy(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(builtin_model_folder() / name, folder / name)
    return folder


def test_a_local_folder_and_an_hf_cache_entry_load(model_copy, tmp_path):
    assert load_pretrained(model_copy).num_layers == 6
    entry = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = entry / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for item in model_copy.iterdir():
        (snapshot / item.name).symlink_to(item)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("abc123")
    model = load_pretrained(entry)
    assert model.folder == snapshot and model.tokenizer.encode("hello").tokens == ["[CLS]", "hello", "[SEP]"]


def test_vocab_txt_is_enough_without_tokenizer_json(model_copy):
    (model_copy / "tokenizer.json").unlink()
    shutil.copy(builtin_model_folder() / "vocab.txt", model_copy / "vocab.txt")
    assert load_pretrained(model_copy).tokenizer.encode("The cat").tokens == ["[CLS]", "the", "cat", "[SEP]"]


@pytest.mark.parametrize("damage,match", [
    (shutil.rmtree, "does not exist"),
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "config.json").write_text("{not json"), "cannot read"),
    (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "gpt2"})), "BERT-family"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 100), "damaged"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]), "damaged"),
    (lambda f: (f / "tokenizer.json").write_text("[]"), "tokenizer"),
    (lambda f: (f / "tokenizer.json").unlink(), "neither tokenizer.json"),
])
def test_broken_model_folders_give_a_clear_error(model_copy, damage, match):
    damage(model_copy)
    with pytest.raises(ModelLoadError, match=match):
        load_pretrained(model_copy)


@pytest.mark.parametrize("parts", [("causal", "window"), ("causal", "padding"), ("window", "padding"),
                                   ("causal", "window", "padding")], ids="+".join)
def test_combined_masks_on_the_real_model_allow_only_what_every_part_allows(parts):
    result = compute(mask=MaskSpec(parts, width=2, pad_to=16))
    n_q, n_k = len(result.query_tokens), len(result.key_tokens)
    valid = 13 if "padding" in parts else n_k
    allowed = np.ones((n_q, n_k), bool)
    if "causal" in parts:
        allowed &= np.tril(np.ones((n_q, n_k), bool))
    if "window" in parts:
        allowed &= np.abs(np.arange(n_q)[:, None] - np.arange(n_k)[None, :]) <= 2
    allowed[:, valid:] = False
    np.testing.assert_array_equal(result.mask, allowed)
    attentions = result.attentions()
    assert (attentions[..., ~allowed] == 0).all()
    # rows with nothing allowed (a pad query whose window holds only pads) are zeros, never NaN
    np.testing.assert_allclose(attentions.sum(-1), np.broadcast_to(allowed.any(-1), attentions.shape[:-1]), atol=1e-5)
    assert result.session.mask == MaskSpec(parts, width=2, pad_to=16)


def test_tokenizers_encode_with_the_gil_released_and_give_the_librarys_own_encoding(minilm, smollm2):
    """encode_one (encode_batch of one text: the GIL is released, so the GUI thread runs while a long document
    is tokenized in the worker) gives exactly the tokens and ids of the library's ``encode``."""
    from attnstudio.models.loader import encode_one  # noqa: PLC0415 - the function under test
    text = "Naïve café — 東京 ✓ <|im_start|> [SEP] don't\n\ttabs  and  spaces " * 40
    for model in (minilm, smollm2):
        library = model.tokenizer._tokenizer
        for options in ({}, {"add_special_tokens": False}):
            ours, theirs = encode_one(library, text, **options), library.encode(text, **options)
            assert ours.ids == theirs.ids and ours.tokens == theirs.tokens
    decoder = smollm2.tokenizer
    bos = [] if decoder.bos_id is None else [decoder.bos_id]
    library_ids = decoder._tokenizer.encode(text, add_special_tokens=decoder.own_special_tokens).ids
    assert list(decoder.encode(text).ids) == bos + library_ids
