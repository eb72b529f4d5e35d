"""`attnstudio compute` end to end, as a subprocess, the way scripts use it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from attnstudio.core.backend import cupy_status
from tests.conftest import GOLDEN_DIR, PROJECT_ROOT


def run_cli(*args, cwd=None):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "attnstudio", *args], capture_output=True, check=False, text=True,
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


@pytest.mark.parametrize("mask", ["causal+window:2", "causal+padding:16", "window:2+padding:16",
                                  "causal+window:2+padding:16"])
def test_compute_with_a_combined_mask_applies_every_part(tmp_path, mask):
    """Through the CLI: the weights are zero wherever any single part forbids the pair."""
    singles = {}
    for part in mask.split("+"):
        out = tmp_path / f"{part.replace(':', '_')}.npz"
        done = run_cli("compute", "The cat sat on the mat because it was tired.", "--mask", part,
                       "--backend", "numpy", "-o", str(out))
        assert done.returncode == 0, done.stderr
        singles[part] = np.load(out, allow_pickle=False)["attentions"]
    out = tmp_path / "combined.npz"
    done = run_cli("compute", "The cat sat on the mat because it was tired.", "--mask", mask, "--backend", "numpy",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    combined = np.load(out, allow_pickle=False)["attentions"]
    n_q, n_k = combined.shape[-2:]
    allowed = np.ones((n_q, n_k), bool)
    for part, attentions in singles.items():
        part_allowed = attentions[0, 0] > 0  # what this part alone lets through, read from its own output
        if "padding" not in part:  # the other parts see the 13 tokens; extend them to the padded length
            np.testing.assert_array_equal(part_allowed, _allowed_rows(part, 13))
            part_allowed = _allowed_rows(part, n_q)
        allowed &= part_allowed
    assert (combined[..., ~allowed] == 0).all()
    assert (combined[0, 0][allowed] > 0).all()
    np.testing.assert_allclose(combined.sum(-1), np.broadcast_to(allowed.any(-1), combined.shape[:-1]), atol=1e-5)


def _allowed_rows(part: str, n: int) -> np.ndarray:
    rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
    return cols <= rows if part == "causal" else np.abs(rows - cols) <= int(part.split(":")[1])
