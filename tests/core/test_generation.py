"""Generating with a decoder: greedy is the argmax chain, seeded sampling repeats itself, stopping stops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.families import family_of
from attnstudio.core.generation import GenerationSettings, generate, sampling_probabilities
from attnstudio.errors import InvalidSetting
from attnstudio.models.registry import load_model

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def model(request):
    return load_model(str(DATA / request.param))


def argmax_chain(model, ids, steps, **options):
    family, ids = family_of(model.parameters), list(ids)
    for _ in range(steps):
        ids.append(int(np.argmax(family.forward(model.parameters, np.asarray(ids), **options).next_logits)))
    return ids


def test_greedy_is_the_argmax_chain_of_full_forward_passes(model):
    ids = model.tokenizer.encode("The cat sat on").ids
    new, outcome = generate(family_of(model.parameters), model.parameters, ids, GenerationSettings(8))
    assert outcome == "done" and len(new) == 8
    assert list(ids) + new == argmax_chain(model, ids, 8)


def test_greedy_with_an_ablation_is_the_ablated_chain(model):
    ids = model.tokenizer.encode("The cat").ids
    ablation = Ablation(heads=((0, 0), (1, 1)))
    new, _ = generate(family_of(model.parameters), model.parameters, ids, GenerationSettings(4), ablation=ablation)
    assert list(ids) + new == argmax_chain(model, ids, 4, ablation=ablation)


def test_seeded_sampling_repeats_itself_and_draws_from_the_tempered_softmax(model):
    family, ids = family_of(model.parameters), model.tokenizer.encode("The dog").ids

    def sample(seed, temperature=1.5):
        return generate(family, model.parameters, ids, GenerationSettings(12, greedy=False, temperature=temperature,
                                                                        seed=seed))[0]
    first = sample(3)
    assert first == sample(3)
    assert any(sample(seed) != first for seed in (4, 5, 6))
    # the first draw is rng.choice over softmax(logits / T) of the text itself
    logits = family.forward(model.parameters, np.asarray(ids)).next_logits
    probabilities = sampling_probabilities(logits, 1.5)
    assert first[0] == int(np.random.default_rng(3).choice(probabilities.shape[0], p=probabilities))
    assert abs(probabilities.sum() - 1) < 1e-12
    assert np.argmax(sampling_probabilities(logits, 0.05)) == np.argmax(logits)


def test_stop_and_a_full_context_end_the_generation(model):
    family, ids = family_of(model.parameters), model.tokenizer.encode("The cat").ids
    seen = []
    new, outcome = generate(family, model.parameters, ids, GenerationSettings(50), should_stop=lambda: len(seen) >= 3,
                            on_token=lambda step, token: seen.append((step, token)))
    assert outcome == "stopped" and len(new) == 3 and [step for step, _ in seen] == [0, 1, 2]
    room = model.parameters.max_positions - len(ids)
    new, outcome = generate(family, model.parameters, ids, GenerationSettings(min(room + 5, 500)))
    assert len(new) == room and "context" in outcome


def test_bad_settings_are_refused():
    for settings in (GenerationSettings(0), GenerationSettings(501), GenerationSettings(5, temperature=0.0)):
        with pytest.raises(InvalidSetting):
            settings.validate()
