"""The prefix cache: extending a causal model's forward pass from its first m tokens equals a full recompute."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnstudio.core.families import family_of
from attnstudio.core.masks import MaskSpec, build_mask
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.models.registry import load_model
from attnstudio.session import Session

DATA = Path(__file__).resolve().parent.parent / "data"
TEXT = "The cat sat on the mat because it was tired. The dog did not."


def close(actual, desired, name=""):
    """Within 1e-6 of the array's own scale: a matmul over fewer rows rounds float32 sums differently (a few ulp)."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=1e-6 * max(1.0, float(np.abs(desired).max())),
                               err_msg=name)


def assert_same(extended, full):
    """Attention weights within 1e-6; every other step within 1e-6 of its largest magnitude."""
    assert len(extended.traces) == len(full.traces)
    for a, b in zip(extended.traces, full.traces, strict=True):
        np.testing.assert_allclose(a.weights, b.weights, rtol=0, atol=1e-6)
        for name in ("queries", "keys", "values", "scores", "context"):
            close(getattr(a, name), getattr(b, name), name)
    for a, b in zip(extended.hidden_states, full.hidden_states, strict=True):
        close(a, b, "hidden state")
    if full.next_logits is None:
        assert extended.next_logits is None
    else:
        close(extended.next_logits, full.next_logits, "logits")


@pytest.mark.parametrize("checkpoint", ["llama", "qwen2"])
@pytest.mark.parametrize("kept", [1, 10, 35])
def test_extending_a_prefix_equals_a_full_recompute(checkpoint, kept):
    model = load_model(str(DATA / f"tiny-{checkpoint}"))
    family = family_of(model.parameters)
    ids = model.tokenizer.encode(TEXT).ids  # 36 tokens
    past = family.forward(model.parameters, ids[:kept])
    assert_same(family.extend(model.parameters, past, ids), family.forward(model.parameters, ids))


def test_an_edit_keeps_the_prefix_and_replaces_the_rest():
    model = load_model(str(DATA / "tiny-llama"))
    family = family_of(model.parameters)
    before = model.tokenizer.encode(TEXT).ids
    after = model.tokenizer.encode(TEXT[:30] + " and the mouse ran away").ids
    kept = int(np.argmin(before[:len(after)] == after[:len(before)]))  # the first differing position
    assert 0 < kept < len(after)
    past = family.forward(model.parameters, before)
    past_prefix = family.forward(model.parameters, after[:kept])
    # the cache of the longer old text, cut to the kept prefix, is the same as a fresh prefix pass
    assert_same(family.extend(model.parameters, past_prefix, after), family.forward(model.parameters, after))
    assert past.traces[0].weights.shape[-1] == len(before)


@pytest.mark.parametrize("spec", [MaskSpec("window", width=3), MaskSpec("none", blocked_cells=((20, 5), (30, 2)))])
def test_extending_with_a_chosen_mask_and_score(spec):
    model = load_model(str(DATA / "tiny-llama"))
    family = family_of(model.parameters)
    ids = model.tokenizer.encode(TEXT).ids
    mask = build_mask(spec, len(ids), len(ids))
    options = {"score": "additive", "scale": 0.5, "seed": 3}
    past = family.forward(model.parameters, ids[:12], mask=mask[:12, :12], **options)
    assert_same(family.extend(model.parameters, past, ids, mask=mask, **options),
                family.forward(model.parameters, ids, mask=mask, **options))


def test_extending_fewer_layers_gives_no_logits():
    model = load_model(str(DATA / "tiny-llama"))
    family = family_of(model.parameters)
    ids = model.tokenizer.encode(TEXT).ids
    past = family.forward(model.parameters, ids[:20], num_layers=1)
    assert_same(family.extend(model.parameters, past, ids, num_layers=1),
                family.forward(model.parameters, ids, num_layers=1))


def test_a_prefix_that_does_not_fit_is_refused():
    model = load_model(str(DATA / "tiny-llama"))
    family = family_of(model.parameters)
    ids = model.tokenizer.encode(TEXT).ids
    with pytest.raises(InvalidSetting, match="cannot extend"):
        family.extend(model.parameters, family.forward(model.parameters, ids), ids)


def test_the_engine_reuses_the_kept_prefix_while_typing_and_matches_a_fresh_engine():
    folder = str(DATA / "tiny-llama")
    typing, fresh = Engine(), Engine()
    texts = [TEXT, TEXT + " A", TEXT + " And", TEXT[:20], TEXT[:20] + " mat"]
    for text, spec in zip(texts, [MaskSpec()] * 4 + [MaskSpec("window", width=2)], strict=True):
        session = Session(text=text, model=folder, backend="numpy", mask=spec)
        live, full = typing.compute(session), fresh.compute(session)
        fresh._prefix.clear()
        np.testing.assert_allclose(live.attentions(), full.attentions(), rtol=0, atol=1e-6)
        assert [t.token_id for t in live.next_tokens] == [t.token_id for t in full.next_tokens]
    reused = typing._prefix.reused
    assert reused == 0  # the window mask changed the rows before the edit: computed from scratch
    typing.compute(Session(text=TEXT[:20] + " mat!", model=folder, backend="numpy", mask=MaskSpec("window", width=2)))
    assert typing._prefix.reused > 0
