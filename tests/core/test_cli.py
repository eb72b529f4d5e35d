"""`attnstudio compute` end to end, as a subprocess, the way scripts use it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import GOLDEN_DIR, PROJECT_ROOT


def run_cli(*args, cwd=None):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "attnstudio", *args], capture_output=True, text=True,
                          cwd=cwd or PROJECT_ROOT, env=env, timeout=120)


def test_default_compute_writes_the_models_own_weights(tmp_path, golden_index):
    out = tmp_path / "cat.npz"
    done = run_cli("compute", golden_index["cat"]["text"], "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "13x13 tokens, 6 layer(s) x 12 head(s)" in done.stdout
    data = np.load(out, allow_pickle=False)
    assert list(data["tokens"]) == golden_index["cat"]["tokens"]
    assert data["attentions"].dtype == np.float32
    golden = np.load(GOLDEN_DIR / "cat.npz", allow_pickle=False)
    assert np.abs(data["attentions"] - golden["attentions"]).max() <= 1e-5


def test_synthetic_cross_attention_with_options(tmp_path):
    out = tmp_path / "x.npz"
    done = run_cli("compute", "the cat sat", "--pair", "a dog slept here", "--model", "synthetic", "--heads", "3",
                   "--d-k", "4", "--seed", "9", "--mask", "causal", "--score", "additive", "--backend", "numpy",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = np.load(out, allow_pickle=False)
    assert data["attentions"].shape == (1, 3, 5, 6)
    assert list(data["key_tokens"]) == ["[CLS]", "a", "dog", "slept", "here", "[SEP]"]
    assert (np.triu(data["attentions"], 1) == 0).all()


@pytest.mark.parametrize("args,message", [
    (["compute", "", "-o", "{out}"], "text is empty"),
    (["compute", "hi", "--model", "synthetic", "--heads", "0", "-o", "{out}"], "heads must be"),
    (["compute", "hi", "--mask", "diagonal", "-o", "{out}"], "unknown mask"),
    (["compute", "hi", "--model", "/no/such/folder", "-o", "{out}"], "does not exist"),
    (["compute", "hi", "-o", "/proc/forbidden/out.npz"], "cannot write"),
    (["compute", "hi", "-o", "{tmp}"], "is a folder"),
    (["compute", "hi", "--heads", "x", "-o", "{out}"], "invalid int value"),
    (["compute", "hi", "--backend", "cupy", "-o", "{out}"], "CuPy"),
    (["compute", "hi"], "required: -o"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
    from attnstudio.core.backend import cupy_status

    if "cupy" in args and cupy_status()[0]:
        pytest.skip("a CUDA GPU is usable here, so --backend cupy is not an error")
    args = [a.format(out=tmp_path / "o.npz", tmp=tmp_path) for a in args]
    done = run_cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o.npz").exists()


def test_an_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "keep.npz"
    out.write_bytes(b"precious")
    done = run_cli("compute", "hi", "--mask", "bad", "-o", str(out))
    assert done.returncode == 2 and out.read_bytes() == b"precious"


def test_overlong_text_is_truncated_with_a_notice(tmp_path):
    out = tmp_path / "long.npz"
    done = run_cli("compute", "word " * 600, "--backend", "numpy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "truncated" in done.stderr
    assert np.load(out)["attentions"].shape == (6, 12, 512, 512)


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("attnstudio ")
