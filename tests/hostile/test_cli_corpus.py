"""Every file of the hostile corpus through the CLI: refused in one line (exit 2) or handled; never an
internal error, a traceback or an abort. Special files (FIFO, device, 1 GB sparse file) are made here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from attnstudio import cli
from attnstudio.engine import Engine, check_heads
from attnstudio.errors import AttnStudioError, FileWriteError, SessionFileError
from attnstudio.export.session_export import caption_for
from attnstudio.fileio import write_atomic
from attnstudio.session import Session
from tests.conftest import PROJECT_ROOT

HOSTILE = Path(__file__).resolve().parent
SESSIONS = sorted((HOSTILE / "sessions").iterdir())
MASKS = sorted((HOSTILE / "masks").iterdir())
MODELS = sorted(p for p in (HOSTILE / "models").iterdir() if p.is_dir())
TEXTS = sorted((HOSTILE / "texts").iterdir())
GGUFS = sorted((HOSTILE / "gguf").glob("*.gguf"))
OPEN_TEXTS = sorted((HOSTILE / "open_text").iterdir())  # files for File → Open text…; only good_* opens
TINY_T5 = PROJECT_ROOT / "tests" / "data" / "tiny-t5"
MISSING_MODEL_SESSIONS = {path.stem for path in SESSIONS if path.stem.startswith("model_gone_")}
QT_OFFSCREEN_CHATTER = {"This plugin does not support propagateSizeHints()"}  # Qt's offscreen platform, not ours
ACCEPTED_SESSIONS = {"lone_surrogate_text", "lone_surrogate_model", "lone_surrogate_field_name", "many_unknown_fields",
                     # valid files naming a model that is gone: read, then refused when the model is loaded
                     "model_gone_folder", "model_gone_gguf", "model_gone_hub"}
THIRTEEN_TOKENS = "The cat sat on the mat because it was tired."  # [CLS] + 10 words + . + [SEP]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    err = capsys.readouterr().err
    return code, err


def assert_one_clear_line(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("notice:") and line not in QT_OFFSCREEN_CHATTER]
    assert len(lines) == 1 and lines[0].startswith("attnstudio: error: "), err
    assert "internal error" not in err and "Traceback" not in err and "panicked" not in err


def t5_folders_missing_files(tmp_path: Path) -> dict[str, Path]:
    """The tiny T5 with one file missing or emptied (made here: the corpus would otherwise hold its weights twice)."""
    folders = {}
    for missing in ("config.json", "model.safetensors", "tokenizer.json", "empty:model.safetensors",
                    "half:model.safetensors"):
        kind, _, name = missing.rpartition(":")
        folder = tmp_path / f"t5_{kind or 'no'}_{name.split('.')[0]}"
        folder.mkdir()
        for source in TINY_T5.iterdir():
            if source.name != name:
                shutil.copy(source, folder / source.name)
            elif kind:
                data = source.read_bytes()
                (folder / name).write_bytes(data[: len(data) // 2] if kind == "half" else b"")
        folders[folder.name] = folder
    return folders


def special_files(tmp_path: Path) -> dict[str, Path]:
    """The inputs that cannot live in git: a FIFO, a device, a 1 GB sparse file, a folder."""
    fifo = tmp_path / "fifo.attnsession"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.attnsession"
    with open(huge, "wb") as stream:
        stream.truncate(1 << 30)  # sparse: no disk used
    folder = tmp_path / "folder.attnsession"
    folder.mkdir()
    return {"fifo": fifo, "dev_zero": Path("/dev/zero"), "huge": huge, "folder": folder}


# --- sessions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SESSIONS, ids=[p.stem for p in SESSIONS])
def test_every_session_file_loads_or_is_refused_in_one_line(path):
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            session = Session.load(path)
    except SessionFileError as error:
        assert path.stem not in ACCEPTED_SESSIONS, error
        assert "\n" not in str(error) and len(str(error)) < 400
        return
    assert path.stem in ACCEPTED_SESSIONS
    session.to_json_bytes().decode("utf-8")  # and it saves: nothing in it that UTF-8 cannot hold


@pytest.mark.parametrize("path", [p for p in SESSIONS if p.stem not in ACCEPTED_SESSIONS],
                         ids=[p.stem for p in SESSIONS if p.stem not in ACCEPTED_SESSIONS])
def test_cli_export_refuses_every_bad_session_in_one_line(path, tmp_path, capsys):
    assert_one_clear_line(*run_cli(capsys, "export", "--session", str(path), "--out-dir", str(tmp_path)))
    assert not list(tmp_path.iterdir())


def test_special_files_are_refused_at_once(tmp_path):
    for name, path in special_files(tmp_path).items():
        started = time.perf_counter()
        with pytest.raises(SessionFileError, match="not a regular file|too large|folder"):
            Session.load(path)
        assert time.perf_counter() - started < 1.0, name


def test_cli_refuses_a_fifo_and_dev_zero_without_hanging(tmp_path):
    for path in (special_files(tmp_path)["fifo"], Path("/dev/zero")):
        done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "--session", str(path), "--out-dir",
                               str(tmp_path / "out")],
                              capture_output=True, check=False, text=True, cwd=PROJECT_ROOT, timeout=60)
        assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_lone_surrogate_session_exports_every_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "--session",
                           str(HOSTILE / "sessions" / "lone_surrogate_text.attnsession"), "--out-dir", str(tmp_path)],
                          capture_output=True, check=False, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line not in QT_OFFSCREEN_CHATTER]
    assert lines == ["attnstudio: note: session file: replaced 2 invalid character(s) (lone surrogates) with �"]
    assert len(list(tmp_path.rglob("*.*"))) >= 20
    assert "\ufffd" in Session.load(tmp_path / "session.attnsession").text


@pytest.mark.parametrize("name", sorted(MISSING_MODEL_SESSIONS))
def test_a_session_whose_model_is_gone_is_refused_in_one_line(name, tmp_path, capsys):
    path = HOSTILE / "sessions" / f"{name}.attnsession"
    model = Session.load(path).model
    code, err = run_cli(capsys, "export", "--session", str(path), "--out-dir", str(tmp_path / "out"))
    assert_one_clear_line(code, err)
    assert model in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --- masks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MASKS, ids=[p.stem for p in MASKS])
def test_every_custom_mask_is_used_or_refused_in_one_line(path, tmp_path, capsys):
    code, err = run_cli(capsys, "compute", THIRTEEN_TOKENS, "--mask", f"custom:{path}", "-o", str(tmp_path / "a.npz"))
    if path.stem.startswith("good_13x13"):
        assert code == 0, err
        attention = np.load(tmp_path / "a.npz")["attentions"]
        assert np.all(np.triu(attention[0, 0], 1) == 0), "the mask was applied"
        return
    assert_one_clear_line(code, err)
    assert not (tmp_path / "a.npz").exists()


def test_a_3000_square_all_false_mask_is_refused_quickly(tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((3000, 3000), bool))
    started = time.perf_counter()
    code, err = run_cli(capsys, "compute", "hi", "--mask", f"custom:{tmp_path / 'big.npy'}", "-o",
                        str(tmp_path / "a.npz"))
    assert_one_clear_line(code, err)
    assert "at most 1024" in err and time.perf_counter() - started < 2.0


# --- model folders ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", MODELS, ids=[p.name for p in MODELS])
def test_every_model_folder_computes_or_is_refused_in_one_line(folder, tmp_path, capsys):
    code, err = run_cli(capsys, "compute", "the cat sat on the " + "a" * 60 + "b", "--model", str(folder),
                        "-o", str(tmp_path / "a.npz"))
    if folder.name == "good":
        assert code == 0, err
        assert np.isfinite(np.load(tmp_path / "a.npz")["attentions"]).all()
        return
    assert_one_clear_line(code, err)


@pytest.mark.parametrize("path", GGUFS, ids=[p.stem for p in GGUFS])
def test_every_gguf_file_computes_or_is_refused_in_one_line(path, tmp_path, capsys):
    code, err = run_cli(capsys, "compute", "the cat sat", "--model", str(path), "-o", str(tmp_path / "a.npz"))
    if path.stem == "good":
        assert code == 0, err
        assert np.isfinite(np.load(tmp_path / "a.npz")["attentions"]).all()
        return
    assert_one_clear_line(code, err)
    assert path.name in err
    reason = err.split(path.name, 1)[1]
    reasons = {"unknown_architecture": "'mamba' model", "tensor_missing": "lacks the tensor 'blk.1.attn_k.weight'",
               "empty": "is empty", "text_file": "is not a GGUF model file",
               "version_99": "is GGUF version 99, or damaged; attnstudio reads versions 2 and 3"}
    expected = reasons.get(path.stem, "is damaged or not a GGUF file: it starts like one, but its header or tensor "
                                      "table cannot be read")
    assert expected in reason, err


def test_a_t5_folder_missing_a_file_is_refused_in_one_line(tmp_path, capsys):
    reasons = {"t5_no_config": "has no config.json", "t5_no_model": "has no model.safetensors",
               "t5_no_tokenizer": "has no tokenizer.json", "t5_empty_model": "model.safetensors",
               "t5_half_model": "model.safetensors"}
    for name, folder in t5_folders_missing_files(tmp_path).items():
        code, err = run_cli(capsys, "compute", "the cat", "--target", "die", "--model", str(folder),
                            "-o", str(tmp_path / "a.npz"))
        assert_one_clear_line(code, err)
        assert reasons[name] in err, (name, err)
        assert not (tmp_path / "a.npz").exists()


def test_an_over_long_text_for_t5_is_cut_and_says_so(tmp_path, capsys):
    """Source and target past T5's 512 tokens: computed on the first 512 of each, with one notice line each."""
    long_text = (HOSTILE / "texts" / "ten_thousand_tokens.txt").read_text(encoding="utf-8")
    code, err = run_cli(capsys, "compute", long_text, "--target", long_text, "--model", str(TINY_T5),
                        "-o", str(tmp_path / "a.npz"))
    assert code == 0, err
    lines = [line for line in err.splitlines() if line not in QT_OFFSCREEN_CHATTER]
    assert lines == ["notice: The source text has 40002 tokens; the model takes 512, so it was truncated.",
                     "notice: The target has 40002 tokens; the model takes 512, so it was truncated."], err
    saved = np.load(tmp_path / "a.npz")
    assert saved["cross_attentions"].shape[-2:] == (512, 512) and np.isfinite(saved["cross_attentions"]).all()


def test_a_tokenizer_panic_prints_one_line_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "attnstudio", "compute", "a" * 60 + "b", "--model",
                           str(HOSTILE / "models" / "tokenizer_catastrophic_regex"), "-o", str(tmp_path / "a.npz")],
                          capture_output=True, check=False, text=True, cwd=PROJECT_ROOT, timeout=120,
                          env={**os.environ, "RUST_BACKTRACE": "1"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "tokenizer failed" in done.stderr


# --- texts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TEXTS, ids=[p.stem for p in TEXTS])
def test_every_text_computes(path, tmp_path, capsys):
    code, err = run_cli(capsys, "compute", path.read_text(encoding="utf-8"), "-o", str(tmp_path / "a.npz"))
    assert code == 0, err
    attention = np.load(tmp_path / "a.npz")["attentions"]
    assert np.isfinite(attention).all() and attention.shape[-1] <= 512


def test_export_says_a_long_text_was_cut(tmp_path, capsys):
    session = Session(text=(HOSTILE / "texts" / "ten_thousand_tokens.txt").read_text(), backend="numpy")
    caption = caption_for(session, Engine().compute(session))
    assert caption.endswith(" · text cut to 512 tokens")


# --- options and outputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["nan", "inf", "1e9", "0", "-1", "30"])
def test_export_scale_is_bounded(scale, tmp_path, capsys):
    code, err = run_cli(capsys, "export", "hi", "-o", str(tmp_path / "a.png"), "--scale", scale)
    assert_one_clear_line(code, err)
    assert "--scale must be a number from 0.25 to 8" in err


def test_profile_checks_its_output_path_before_the_sweep(tmp_path, capsys):
    started = time.perf_counter()
    code, err = run_cli(capsys, "profile", "--n", "64,4096", "--json", str(tmp_path / "missing" / "p.json"))
    assert_one_clear_line(code, err)
    assert "does not exist" in err and time.perf_counter() - started < 2.0


def test_outputs_with_long_names_and_folders_in_the_way_fail_clearly(tmp_path, capsys):
    code, err = run_cli(capsys, "compute", "hi", "-o", str(tmp_path / ("n" * 300 + ".npz")))
    assert_one_clear_line(code, err)
    assert "too long" in err
    out = tmp_path / "out"
    out.mkdir()
    (out / "layer1_heads").write_text("a file where the heads folder goes")
    Session(text="Collisions.", backend="numpy").save(tmp_path / "s.attnsession")
    done = subprocess.run([sys.executable, "-m", "attnstudio", "export", "--session", str(tmp_path / "s.attnsession"),
                           "--out-dir", str(out)],
                          capture_output=True, check=False, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert_one_clear_line(done.returncode, done.stderr)
    assert "a file of that name is in the way" in done.stderr


def test_writes_go_through_symlinks_and_clean_up_after_crashes(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert link.is_symlink() and target.read_text() == "new"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True, text=True)
    stale = tmp_path / f".real.json.{dead.stdout.strip()}.abc123.tmp"
    stale.write_bytes(b"x" * 9_000_000)  # what a crash mid-write left
    write_atomic(target, b"newer")
    assert not stale.exists() and target.read_text() == "newer"
    with pytest.raises(FileWriteError, match="too long"):
        write_atomic(tmp_path / ("x" * 300), b"")


def test_a_profiler_section_from_the_crash_loop_is_refused(tmp_path):
    document = json.loads((HOSTILE / "sessions" / "profile_median_fast.attnsession").read_text())
    with pytest.raises(SessionFileError, match="median_s"):
        Session.from_json_dict(document)


def test_a_model_folder_whose_config_is_a_fifo_is_refused_not_waited_on(tmp_path):
    """Offering head counts reads config.json before any weights: a FIFO there must not hang the GUI thread."""
    os.mkfifo(tmp_path / "config.json")
    outcome = []

    def ask():
        try:
            check_heads(str(tmp_path), 4)
        except AttnStudioError as error:
            outcome.append(str(error))

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(20)
    if asker.is_alive():  # unblock the reader so the test process can end, then fail
        with open(tmp_path / "config.json", "w"):
            pass
        pytest.fail("check_heads blocked on a FIFO config.json")
    assert outcome and "\n" not in outcome[0], outcome
