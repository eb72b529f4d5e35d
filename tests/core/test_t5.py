"""The T5 encoder-decoder family against transformers' own forward pass (tiny random checkpoints and reference
tensors made by benchmarks/make_tiny_t5.py in the benchmark venv), its bucketed relative positions, its loader's
refusals, the engine's three attention kinds and `attnstudio compute --target`."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from attnstudio.core.ablation import Ablation
from attnstudio.core.families import family_of
from attnstudio.core.families.t5 import relative_position_buckets
from attnstudio.core.masks import MaskSpec
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting, ModelLoadError
from attnstudio.models.registry import load_model
from attnstudio.session import Session
from tests.core.test_cli import run_cli

DATA = Path(__file__).resolve().parent.parent / "data"
CHECKPOINTS = ("tiny-t5", "tiny-t5-relu")  # gated GELU + untied head; ReLU + tied, rescaled head


def stacked(traces) -> np.ndarray:
    return np.stack([trace.weights for trace in traces])  # (layers, heads, n_q, n_k)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
@pytest.mark.parametrize("empty_target", [False, True])
def test_a_tiny_t5_matches_transformers(checkpoint, empty_target):
    model = load_model(str(DATA / checkpoint))
    reference = np.load(DATA / f"{checkpoint}.npz")
    family = family_of(model.parameters)
    assert family.name == "t5" and family.encoder_decoder and family.has_head
    source = model.tokenizer.encode(str(reference["source_text"]))
    np.testing.assert_array_equal(source.ids, reference["input_ids"])
    assert source.tokens[-1] == "</s>"  # the tokenizer's own end token closes the source
    target = model.tokenizer.encode_target("" if empty_target else str(reference["target_text"]))
    if not empty_target:
        np.testing.assert_array_equal(target.ids, reference["decoder_input_ids"])
    assert target.ids[0] == model.parameters.decoder_start_id == 0 and target.tokens[0] == "<pad>"
    prefix = "empty_" if empty_target else ""
    result = family.forward(model.parameters, source.ids, target_ids=target.ids)
    for name, attentions in (("encoder_attentions", result.attentions()),
                             ("decoder_attentions", stacked(result.decoder_traces)),
                             ("cross_attentions", stacked(result.cross_traces))):
        assert attentions.shape == reference[prefix + name].shape, name
        np.testing.assert_allclose(attentions, reference[prefix + name], rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(result.next_logits, reference[prefix + "last_logits"], rtol=0, atol=1e-4)


def test_the_two_checkpoints_cover_both_generations_of_t5():
    gated, relu = (load_model(str(DATA / name)).parameters for name in CHECKPOINTS)
    assert (gated.gated, gated.activation, gated.unembedding is not None, gated.scale_decoder_output) == \
        (True, "gelu_new", True, False)
    assert (relu.gated, relu.activation, relu.unembedding is None, relu.scale_decoder_output) == \
        (False, "relu", True, True)
    assert len(gated.decoder_layers) == 3 and len(gated.encoder_layers) == 2


def test_the_tied_head_rescale_and_the_position_bias_are_used():
    """Dropping T5's d_model**-0.5 rescale, or its position bias, misses the reference: neither is decoration."""
    model = load_model(str(DATA / "tiny-t5-relu"))
    reference = np.load(DATA / "tiny-t5-relu.npz")
    forward = family_of(model.parameters).forward
    ids, target = reference["input_ids"], reference["decoder_input_ids"]
    unscaled = dataclasses.replace(model.parameters, scale_decoder_output=False)
    logits = forward(unscaled, ids, target_ids=target).next_logits
    assert np.abs(logits - reference["last_logits"]).max() > 1e-2
    zeros = np.zeros_like(model.parameters.encoder_relative_bias)
    no_bias = dataclasses.replace(model.parameters, encoder_relative_bias=zeros)
    assert np.abs(forward(no_bias, ids, target_ids=target).attentions() - reference["encoder_attentions"]).max() > 1e-3


def test_every_layer_adds_the_first_layers_bias():
    model = load_model(str(DATA / "tiny-t5"))
    reference = np.load(DATA / "tiny-t5.npz")
    result = family_of(model.parameters).forward(model.parameters, reference["input_ids"],
                                              target_ids=reference["decoder_input_ids"])
    for traces, bias in ((result.traces, result.encoder_position_bias),
                         (result.decoder_traces, result.decoder_position_bias)):
        for trace in traces:  # scores = q k^T (no 1/sqrt(d)) + the shared bias
            np.testing.assert_allclose(trace.scores - trace.queries @ np.swapaxes(trace.keys, -1, -2), bias, atol=1e-5)
    for trace in result.cross_traces:  # cross-attention: no position bias at all
        np.testing.assert_allclose(trace.scores, trace.queries @ np.swapaxes(trace.keys, -1, -2), atol=1e-5)
    n = result.decoder_traces[0].weights.shape[-1]
    assert (np.triu(np.ones((n, n)), 1)[None] * result.decoder_traces[0].weights == 0).all()  # causal


def test_relative_position_buckets_follow_t5():
    """The buckets transformers' T5Attention._relative_position_bucket gives (values read from it)."""
    distances = (0, 1, 7, 8, 11, 12, 20, 63, 64, 100, 127, 128, 399)
    future = relative_position_buckets(1, 400, bidirectional=True, num_buckets=32, max_distance=128)[0]
    # key - query = 0..7 exact (future keys in the upper half of the buckets), then log-spaced up to 128
    assert [int(future[d]) for d in distances] == [0, 17, 23, 24, 24, 25, 26, 29, 30, 31, 31, 31, 31]
    past = relative_position_buckets(400, 1, bidirectional=True, num_buckets=32, max_distance=128)[:, 0]
    assert [int(past[d]) for d in distances] == [0, 1, 7, 8, 8, 9, 10, 13, 14, 15, 15, 15, 15]
    causal = relative_position_buckets(400, 1, bidirectional=False, num_buckets=32, max_distance=128)[:, 0]
    assert [int(causal[d]) for d in (0, 1, 15, 16, 20, 50, 100, 127, 128, 299)] == [0, 1, 15, 16, 17, 24, 30, 31,
                                                                                    31, 31]
    square = relative_position_buckets(300, 300, bidirectional=False, num_buckets=32, max_distance=128)
    assert square[5, 9] == 0 and square[9, 5] == 4  # a causal decoder buckets only the past
    assert (np.diff(square[-1, ::-1]) >= 0).all()  # the farther back, the later the bucket


def test_an_encoder_ablation_switches_heads_off():
    model = load_model(str(DATA / "tiny-t5"))
    ids = np.load(DATA / "tiny-t5.npz")["input_ids"]
    forward = family_of(model.parameters).forward
    plain, ablated = forward(model.parameters, ids), forward(model.parameters, ids, ablation=Ablation(((0, 1),)))
    assert np.abs(ablated.traces[0].context[1]).max() == 0.0
    assert np.abs(ablated.next_logits - plain.next_logits).max() > 1e-5
    with pytest.raises(InvalidSetting, match="L3·H1"):
        forward(model.parameters, ids, ablation=Ablation(((2, 0),)))


def test_the_engine_gives_three_kinds_of_one_pass():
    reference = np.load(DATA / "tiny-t5.npz")
    session = Session(text=str(reference["source_text"]), target_text=str(reference["target_text"]),
                      model=str(DATA / "tiny-t5"), backend="numpy", attention_kind="cross")
    result = Engine().compute(session)
    assert result.attention_kind == "cross" and set(result.kinds) == {"encoder", "decoder", "cross"}
    encoder, decoder, cross = (result.for_kind(kind) for kind in ("encoder", "decoder", "cross"))
    np.testing.assert_allclose(encoder.attentions(), reference["encoder_attentions"], atol=1e-5)
    np.testing.assert_allclose(decoder.attentions(), reference["decoder_attentions"], atol=1e-5)
    np.testing.assert_allclose(cross.attentions(), reference["cross_attentions"], atol=1e-5)
    assert cross.query_tokens == decoder.query_tokens == result.target_tokens and result.target_tokens[0] == "<pad>"
    assert cross.key_tokens == encoder.query_tokens and encoder.query_tokens[-1] == "</s>"
    assert cross.axis_titles == ("query (target)", "key (source)") and cross.cross_attention
    assert "cross-attention" in cross.model_name and "decoder self-attention" in decoder.model_name
    assert decoder.causal_model and (decoder.mask == np.tril(np.ones_like(decoder.mask))).all()
    assert encoder.position_bias.shape == (4, 26, 26) and cross.position_bias is None
    assert result.next_tokens and result.next_tokens[0].probability >= result.next_tokens[-1].probability
    np.testing.assert_allclose(result.forward.next_logits, reference["last_logits"], atol=1e-4)


@pytest.mark.parametrize("change, match", [
    ({"pair_text": "a second text"}, "clear the pair text"),
    ({"score": "additive"}, "'additive' score function does not apply"),
    ({"heads": 2}, "cannot be re-split"),
])
def test_what_t5_cannot_take_is_one_line(change, match):
    session = Session(text="The house is wonderful.", model=str(DATA / "tiny-t5"), backend="numpy", **change)
    with pytest.raises(InvalidSetting, match=match):
        Engine().compute(session)


def test_a_mask_of_the_users_is_refused_for_t5():
    with pytest.raises(InvalidSetting, match="its own masks"):
        Engine().compute(Session(text="The house.", model=str(DATA / "tiny-t5"), mask=MaskSpec("causal")))


@pytest.mark.parametrize("change, match", [
    ({"feed_forward_proj": "gated-gelu-x"}, "feed_forward_proj 'gated-gelu-x' is not supported"),
    ({"feed_forward_proj": "tanh"}, "is not supported"),
    ({"d_kv": 0}, "no valid 'd_kv'"),
    ({"num_heads": 3}, "tensor encoder.block.0.layer.0.SelfAttention.q.weight has shape"),
    ({"relative_attention_num_buckets": 8}, "relative_attention_bias.weight has shape"),
])
def test_a_damaged_t5_config_is_one_line(tmp_path, change, match):
    folder = shutil.copytree(DATA / "tiny-t5", tmp_path / "t5")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(folder))


def test_an_untied_t5_without_its_head_says_which_tensor_is_missing(tmp_path):
    folder = shutil.copytree(DATA / "tiny-t5", tmp_path / "t5")
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="lacks the tensor 'lm_head.weight'"):
        load_model(str(folder))


def test_an_unsupported_family_names_the_supported_ones(tmp_path):
    folder = shutil.copytree(DATA / "tiny-t5", tmp_path / "bart")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    with pytest.raises(ModelLoadError, match=r"'bart' model; attnstudio runs the model families bert, llama, "
                                             r"gpt2, t5"):
        load_model(str(folder))


def test_a_t5_in_the_hugging_face_cache_is_found_by_its_repo_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = tmp_path / "hub" / "models--google--tiny-t5" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (snapshot / name).symlink_to(DATA / "tiny-t5" / name)  # the hub links blobs the same way
    model = load_model("google/tiny-t5")
    assert model.name == "google/tiny-t5" and family_of(model.parameters).name == "t5"


def test_session_keeps_the_target_and_the_attention_kind_and_old_files_load():
    session = Session(text="source", target_text="Das Haus", attention_kind="decoder")
    again = Session.from_json_text(session.to_json_bytes())
    assert (again.target_text, again.attention_kind) == ("Das Haus", "decoder")
    old = session.to_json_dict()
    del old["session"]["target_text"], old["session"]["attention_kind"]
    restored = Session.from_json_dict(old)
    assert (restored.target_text, restored.attention_kind) == ("", "encoder")
    with pytest.raises(InvalidSetting, match="unknown attention 'sideways'"):
        Session(attention_kind="sideways").validate()


def test_compute_with_target_writes_every_kind(tmp_path):
    reference = np.load(DATA / "tiny-t5.npz")
    out = tmp_path / "t5.npz"
    done = run_cli("compute", str(reference["source_text"]), "--target", str(reference["target_text"]),
                   "--model", str(DATA / "tiny-t5"), "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "26 source and 11 target tokens, 2 encoder and 3 decoder layer(s) x 4 head(s)" in done.stdout
    data = np.load(out, allow_pickle=False)
    assert data["tokens"][-1] == "</s>" and list(data["target_tokens"][:2]) == ["<pad>", " Das"]
    for name, key in (("attentions", "encoder_attentions"), ("decoder_attentions", "decoder_attentions"),
                      ("cross_attentions", "cross_attentions")):
        assert data[name].dtype == np.float32
        np.testing.assert_allclose(data[name], reference[key], rtol=0, atol=1e-5)
    assert data["cross_attentions"].shape == (3, 4, 11, 26)
    np.testing.assert_allclose(data["next_logits"], reference["last_logits"], rtol=0, atol=1e-4)


def test_compute_without_target_starts_the_decoder_from_its_start_token(tmp_path):
    reference = np.load(DATA / "tiny-t5-relu.npz")
    out = tmp_path / "t5.npz"
    done = run_cli("compute", str(reference["source_text"]), "--model", str(DATA / "tiny-t5-relu"), "--layers", "2",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = np.load(out, allow_pickle=False)
    assert list(data["target_tokens"]) == ["<pad>"]
    np.testing.assert_allclose(data["cross_attentions"], reference["empty_cross_attentions"][1:2], atol=1e-5)
    np.testing.assert_allclose(data["next_logits"], reference["empty_last_logits"], atol=1e-4)


def test_target_on_a_one_text_model_is_one_line(tmp_path):
    done = run_cli("compute", "The cat sat.", "--target", "Die Katze", "-o", str(tmp_path / "x.npz"))
    assert done.returncode == 2
    assert done.stderr.strip() == ("attnstudio: error: --target needs an encoder-decoder model (T5); minilm takes "
                                   "one text")
    assert not (tmp_path / "x.npz").exists()


def test_export_writes_the_chosen_attention_and_a_report_that_names_it(tmp_path):
    out = tmp_path / "cross.png"
    done = run_cli("export", "translate English to German: The house is wonderful.", "--target", "Das Haus ist",
                   "--model", str(DATA / "tiny-t5"), "--attention", "cross", "--layer", "3", "--scale", "1",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "layer 3" in done.stdout
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") >= 1000  # 1200 px at 1×
    session_dir = tmp_path / "session"
    Session(text="translate English to German: The house is wonderful.", target_text="Das Haus",
            model=str(DATA / "tiny-t5"), backend="numpy", attention_kind="decoder").save(tmp_path / "t5.attnsession")
    done = run_cli("export", "--session", str(tmp_path / "t5.attnsession"), "--out-dir", str(session_dir))
    assert done.returncode == 0, done.stderr
    report = (session_dir / "report.html").read_text(encoding="utf-8")
    assert "decoder self-attention" in report and "Das Haus" in report and "relative position bias" in report
    assert (session_dir / "position_bias.png").is_file()
