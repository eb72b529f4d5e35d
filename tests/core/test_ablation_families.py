"""Ablation and induction heads through the model-family registry (the decoder family)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import induction_scores, measure_induction
from attnstudio.core.families import FAMILIES
from attnstudio.core.families.llama import feed_forward, forward, rms_norm
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.models.registry import load_model
from attnstudio.session import Session
from tests.core.test_families import tiny_llama
from tests.core.tiny_gguf import write_tiny_llama

IDS = np.array([3, 17, 5, 9, 30, 2, 11])


def test_every_family_takes_an_ablation(minilm):
    gpt2 = load_model(str(Path(__file__).resolve().parents[1] / "data" / "tiny-gpt2"))
    examples = {"bert": (minilm.parameters, minilm.tokenizer.encode("The bank of the river.").ids),
                "llama": (tiny_llama(), IDS), "gpt2": (gpt2.parameters, IDS)}
    assert set(examples) == set(FAMILIES), "every family in the registry is tried"
    for name, family in FAMILIES.items():
        parameters, ids = examples[name]
        plain = family.forward(parameters, ids)
        same = family.forward(parameters, ids, ablation=Ablation())
        np.testing.assert_array_equal(same.attentions(), plain.attentions())
        changed = family.forward(parameters, ids, ablation=Ablation(((0, 1),)))
        assert np.abs(changed.traces[0].context[1]).max() == 0.0, name
        assert np.abs(changed.hidden_states[-1] - plain.hidden_states[-1]).max() > 1e-5, name


def test_decoder_layer_with_every_head_zeroed_is_the_residual_plus_feed_forward():
    parameters = tiny_llama()
    plain = forward(parameters, IDS)
    ablated = forward(parameters, IDS, ablation=Ablation(tuple((0, h) for h in range(parameters.num_heads))))
    x = plain.hidden_states[0]  # no output bias in Llama: the attention block adds nothing
    first = parameters.layers[0]
    by_hand = x + feed_forward(rms_norm(x, first.mlp_norm, parameters.rms_norm_eps), first)
    np.testing.assert_allclose(ablated.hidden_states[1], by_hand, atol=1e-5)
    assert np.abs(ablated.next_logits - plain.next_logits).max() > 1e-4


def test_uniform_decoder_head_spreads_over_the_causal_prefix():
    ablated = forward(tiny_llama(), IDS, ablation=Ablation(((1, 2),), "uniform"))
    n = IDS.shape[0]
    expected = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    np.testing.assert_allclose(ablated.traces[1].weights[2], expected, atol=1e-7)
    with pytest.raises(InvalidSetting, match="L3·H1"):
        forward(tiny_llama(), IDS, ablation=Ablation(((2, 0),)))


def test_measure_induction_runs_the_repeated_sequence_through_the_family():
    parameters = tiny_llama(vocab=40)
    calls = []

    def recording_forward(p, ids, **options):
        calls.append(np.asarray(ids))
        return forward(p, ids, **options)

    scores = measure_induction(recording_forward, parameters, 40, period=10, seed=1, prefix=(0,))
    (ids,) = calls
    assert ids.shape == (21,) and ids[0] == 0 and (ids[1:11] == ids[11:]).all()
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(scores, induction_scores(forward(parameters, ids).attentions(), 10, 1))


def test_engine_gives_a_decoder_induction_roles_and_ablation_effects(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path)
    engine = Engine()
    plain = engine.compute(Session(text="the cat sat", model=str(path), backend="numpy"))
    roles = plain.head_roles
    layers, heads = plain.num_layers, plain.heads
    assert roles["induction"].shape == (layers, heads) and ((0 <= roles["induction"]) & (roles["induction"] <= 1)).all()
    assert roles["previous"].shape == (layers, heads)
    ablated = engine.compute(Session(text="the cat sat", model=str(path), backend="numpy",
                                     ablation=Ablation(((0, 0),))))
    # The baseline may come from the prefix cache, which equals a full recompute to 1e-6 (test_prefix_cache).
    np.testing.assert_allclose(ablated.baseline.attentions(), plain.attentions(), atol=1e-6)
    np.testing.assert_allclose(ablated.baseline.forward.next_logits, plain.forward.next_logits, atol=1e-4)
    assert np.abs(ablated.forward.next_logits - plain.forward.next_logits).max() > 1e-5
