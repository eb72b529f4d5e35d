"""Session files: versioned JSON, validated, atomic, and safe against damage."""
from __future__ import annotations

import json
import os

import pytest

from attnstudio.core.masks import MaskSpec
from attnstudio.core.profiling import ProfileConfig, ProfilePoint, ProfileResult
from attnstudio.errors import FileWriteError, InvalidSetting, SessionFileError
from attnstudio.fileio import write_atomic
from attnstudio.session import FORMAT_VERSION, Session

SAVED_PROFILE = ProfileResult(ProfileConfig(lengths=(64, 128)),
                              [ProfilePoint(64, "naive", "numpy", "ok", 1e-4, 2048, 1024)]).to_json_dict()


def full_session() -> Session:
    return Session(text="Héllo wörld 東京", pair_text="a pair", model="synthetic", heads=3, d_k=7, d_model=21, seed=5,
                   score="additive", temperature=0.5, mask=MaskSpec("window", width=3, blocked_cells=((1, 2), (0, 0))),
                   backend="numpy", layer=0, head=2, view="pipeline", profile=SAVED_PROFILE)


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "s.attnsession"
    full_session().save(path)
    assert Session.load(path) == full_session()
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == FORMAT_VERSION


@pytest.mark.parametrize("content,match", [
    (b"", "damaged or truncated"), (b"{\"format\": \"attnstudio-session\", \"vers", "damaged or truncated"),
    (b"\xff\xfe\x00garbage", "damaged"), (b"[1, 2]", "not an attnstudio session"),
    (json.dumps({"format": "attnstudio-session", "version": 99, "session": {}}).encode(), "newer attnstudio"),
    (json.dumps({"format": "attnstudio-session", "version": 1, "session": {"heads": 0}}).encode(), "invalid setting"),
    (json.dumps({"format": "attnstudio-session", "version": 1, "session": {"mask": {"kind": "zigzag"}}}).encode(),
     "invalid setting"),
    (json.dumps({"format": "attnstudio-session", "version": 1, "session": {"text": 5}}).encode(), "invalid setting"),
])
def test_damaged_files_are_refused_clearly(tmp_path, content, match):
    path = tmp_path / "bad.attnsession"
    path.write_bytes(content)
    with pytest.raises(SessionFileError, match=match):
        Session.load(path)
    assert path.read_bytes() == content, "refusing a file never changes it"


def test_unknown_fields_are_ignored_with_a_warning(tmp_path):
    document = Session().to_json_dict()
    document["session"]["colour_of_the_sky"] = "blue"
    path = tmp_path / "extra.attnsession"
    path.write_text(json.dumps(document))
    with pytest.warns(UserWarning, match="colour_of_the_sky"):
        assert Session.load(path) == Session()


def test_a_folder_or_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SessionFileError, match="is a folder"):
        Session.load(tmp_path)
    with pytest.raises(SessionFileError, match="cannot read"):
        Session.load(tmp_path / "missing.attnsession")


def test_validation_messages():
    for fields, match in (({"text": ""}, "empty"), ({"score": "cosine"}, "unknown score"),
                          ({"backend": "tpu"}, "unknown backend"), ({"temperature": float("nan")}, "temperature"),
                          ({"layer": -1}, "layer"), ({"heads": 1000}, "heads")):
        with pytest.raises(InvalidSetting, match=match):
            Session(**fields).validate()


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "keep.attnsession"
    Session(text="first").save(path)
    before = path.read_bytes()

    def broken_replace(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(FileWriteError, match="No space left"):
        Session(text="second").save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.attnsession"], "no temporary file is left behind"


def test_writing_into_a_read_only_folder_or_onto_a_folder_fails_clearly(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "sub"
        target.mkdir()
        with pytest.raises(FileWriteError, match="is a folder"):
            write_atomic(target, b"x")
        with pytest.raises(FileWriteError, match="cannot write"):
            write_atomic(tmp_path / "no" / "such" / "dir" / "f", b"x")
        return
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    with pytest.raises(FileWriteError, match="cannot write"):
        write_atomic(readonly / "f", b"x")


def test_format_1_files_with_one_mask_kind_still_open(tmp_path):
    """Format 1 stored a single "kind"; it opens as a mask with that one part, colour settings at their defaults."""
    path = tmp_path / "old.attnsession"
    path.write_text(json.dumps({"format": "attnstudio-session", "version": 1, "session": {
        "text": "old file", "mask": {"kind": "window", "width": 3, "pad_to": None, "blocked_cells": [[1, 0]]}}}))
    session = Session.load(path)
    assert session.mask == MaskSpec(("window",), width=3, blocked_cells=((1, 0),))
    assert (session.color_scale, session.hide_special) == ("unit", False)
    path.write_text(json.dumps({"format": "attnstudio-session", "version": 1, "session": {"mask": {"kind": "none"}}}))
    assert Session.load(path).mask == MaskSpec()


def test_combined_mask_and_colour_settings_round_trip(tmp_path):
    session = Session(mask=MaskSpec(("causal", "window", "padding"), width=1, pad_to=16), color_scale="log",
                      hide_special=True)
    session.save(tmp_path / "s.attnsession")
    document = json.loads((tmp_path / "s.attnsession").read_text())
    assert document["session"]["mask"]["kinds"] == ["causal", "window", "padding"]
    assert Session.load(tmp_path / "s.attnsession") == session


@pytest.mark.parametrize("fields,match", [({"color_scale": "rainbow"}, "colour scale"),
                                          ({"hide_special": "yes"}, "hide_special")])
def test_bad_colour_settings_are_refused(fields, match):
    with pytest.raises(InvalidSetting, match=match):
        Session(**fields).validate()
