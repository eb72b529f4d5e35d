"""The session model: one signal per Session field carrying the new value, and no catch-all by name."""
from __future__ import annotations

import dataclasses

import pytest

from attnstudio.core.masks import MaskSpec
from attnstudio.session import Session
from attnstudio.ui.session_model import FIELD_NAMES, VIEW_FIELDS, SessionModel, changed_signal_name


def record(model: SessionModel) -> list[tuple[str, object]]:
    """Every field signal and compute_needed/edited, in the order they are emitted."""
    seen: list[tuple[str, object]] = []
    for name in FIELD_NAMES:
        model.signal(name).connect(lambda value, name=name: seen.append((name, value)))
    model.compute_needed.connect(lambda: seen.append(("compute_needed", None)))
    model.edited.connect(lambda: seen.append(("edited", None)))
    return seen


def test_every_session_field_has_its_own_signal(qapp):
    model = SessionModel()
    assert FIELD_NAMES == tuple(field.name for field in dataclasses.fields(Session))
    for name in FIELD_NAMES:
        assert getattr(model, changed_signal_name(name)) == model.signal(name)
    assert not hasattr(model, "changed"), "no catch-all signal to filter by name"
    with pytest.raises(AttributeError):
        model.text  # noqa: B018 - no forwarding to the session: read session_model.session.text
    with pytest.raises(KeyError):
        model.signal("colour")


def test_an_update_announces_only_the_fields_that_changed_with_their_values(qapp):
    model = SessionModel(Session(backend="numpy"))
    seen = record(model)
    assert model.update(layer=2, head=0, text=Session().text)  # head and text are unchanged
    assert seen == [("layer", 2), ("edited", None)], "a view field computes nothing"
    seen.clear()
    assert model.update(temperature=0.5, mask=MaskSpec("causal"))
    assert seen == [("temperature", 0.5), ("mask", MaskSpec("causal")), ("edited", None), ("compute_needed", None)]
    seen.clear()
    assert model.update(layer=2)
    assert seen == []


def test_a_refused_update_announces_nothing_but_the_reason(qapp):
    model = SessionModel(Session(backend="numpy"))
    seen, reasons = record(model), []
    model.rejected.connect(reasons.append)
    assert not model.update(text="   ")
    assert seen == [] and reasons == ["the text is empty: type a sentence"]
    assert model.session.text == Session().text


def test_replacing_the_session_announces_every_field_once(qapp):
    model = SessionModel(Session(backend="numpy"))
    seen = record(model)
    loaded = Session(text="Loaded.", backend="numpy", layer=1)
    model.replace(loaded)
    assert seen[:len(FIELD_NAMES)] == [(name, getattr(loaded, name)) for name in FIELD_NAMES]
    assert seen[len(FIELD_NAMES):] == [("edited", None), ("compute_needed", None)]
    assert VIEW_FIELDS < set(FIELD_NAMES)


def test_the_session_property_is_a_copy(qapp):
    model = SessionModel(Session(backend="numpy"))
    copy = model.session
    copy.text = "Changed behind the model's back."
    assert model.session.text == Session().text
