"""Compare text and ablation as session fields: validated, saved, and computed by the engine."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from attnstudio.core.ablation import Ablation
from attnstudio.core.analysis import cosine_similarity
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting, SessionFileError
from attnstudio.session import Session
from tests.conftest import PROJECT_ROOT

BANK_A = "I deposited the money into my bank account."
BANK_B = "We had a picnic on the grassy river bank."


def test_compare_text_and_ablation_survive_a_save(tmp_path):
    session = Session(text=BANK_A, compare_text=BANK_B, compare_word="bank",
                      ablation=Ablation(((1, 2), (0, 5)), "uniform"))
    path = tmp_path / "s.attnsession"
    session.save(path)
    saved = json.loads(path.read_text(encoding="utf-8"))["session"]
    assert saved["ablation"] == {"heads": [[0, 5], [1, 2]], "mode": "uniform"}
    loaded = Session.load(path)
    assert loaded == session and loaded.ablation.heads == ((0, 5), (1, 2))


@pytest.mark.parametrize("ablation", [[[0, 1]], {"heads": [[0, "x"]]}, {"heads": [[0, 1]], "mode": "half"},
                                      {"heads": "0,1"}])
def test_bad_ablation_in_a_file_is_one_clear_error(ablation):
    document = {"format": "attnstudio-session", "version": 1, "session": {"ablation": ablation}}
    with pytest.raises(SessionFileError, match="invalid setting"):
        Session.from_json_dict(document)


def test_compare_fields_are_validated():
    with pytest.raises(InvalidSetting, match="text"):
        Session(compare_text=3).validate()
    with pytest.raises(InvalidSetting, match="longer"):
        Session(compare_text="x" * 100_001).validate()
    with pytest.raises(InvalidSetting, match="word"):
        Session(compare_word="w" * 101).validate()


def test_engine_runs_text_b_and_the_unablated_baseline():
    engine = Engine()
    plain = engine.compute(Session(text=BANK_A, backend="numpy"))
    assert plain.compare is None and plain.baseline is None
    ablation = Ablation(tuple((0, head) for head in range(12)))
    result = engine.compute(Session(text=BANK_A, compare_text=BANK_B, ablation=ablation, backend="numpy"))
    assert result.compare.query_tokens[-3:] == ["bank", ".", "[SEP]"]
    assert result.compare.compare is None  # text B does not compare again
    np.testing.assert_array_equal(result.baseline.attentions(), plain.attentions())
    assert np.abs(result.attentions()[1:] - plain.attentions()[1:]).max() > 1e-3
    with_ablation = cosine_similarity(result.sentence_embedding, result.compare.sentence_embedding)
    without = cosine_similarity(result.baseline.sentence_embedding, result.baseline.compare.sentence_embedding)
    assert abs(with_ablation - without) > 1e-3
    assert np.linalg.norm(result.sentence_embedding) == pytest.approx(1.0, abs=1e-6)


def test_engine_refuses_an_ablation_the_model_does_not_have():
    with pytest.raises(InvalidSetting, match="cannot ablate L10·H1"):
        Engine().compute(Session(ablation=Ablation(((9, 0),)), backend="numpy"))


def test_head_roles_of_a_result():
    result = Engine().compute(Session(backend="numpy"))
    roles = result.head_roles
    assert roles["first"].shape == (result.num_layers, result.heads)
    # MiniLM's layer 1 head 3 attends to the previous token (measured: 1.00 on this sentence)
    assert roles["previous"][0, 2] > 0.95 and roles["previous"][0, 2] == roles["previous"].max()
    assert roles["previous"][0, 2] > roles["previous"][0, 3] + 0.5


def test_export_command_takes_cell_compare_and_ablation(tmp_path):
    out = tmp_path / "why.png"
    done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "The cat sat on the mat because it was tired.",
                           "--view", "why", "--cell", "8,2", "--ablate", "1.3,2.5", "--ablation-mode", "uniform",
                           "-o", str(out), "--backend", "numpy"],
                          cwd=PROJECT_ROOT, capture_output=True, check=False, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000
    for bad, message in ((["--ablate", "1.x"], "layer.head"), (["--ablate", "9.1"], "cannot ablate L9·H1"),
                         (["--cell", "1,2,3"], "--cell")):
        done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "x", "-o", str(out), *bad],
                              cwd=PROJECT_ROOT, capture_output=True, check=False, text=True)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
