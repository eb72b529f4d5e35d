"""Every file of the hostile corpus through the GUI's loaders: opened or refused with one status line, never
an exception; the window keeps computing afterwards. Start-up restore never stops the app from starting."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from PySide6.QtCore import QSettings

from attnstudio.core.synthetic import synthetic_parameters
from attnstudio.engine import Engine
from attnstudio.errors import InvalidSetting
from attnstudio.session import Session
from attnstudio.ui.compute_worker import ComputeController
from tests.conftest import PROJECT_ROOT
from tests.hostile.test_cli_corpus import (
    GGUFS,
    HOSTILE,
    MISSING_MODEL_SESSIONS,
    MODELS,
    OPEN_TEXTS,
    SESSIONS,
    TEXTS,
    TINY_T5,
    special_files,
    t5_folders_missing_files,
)
from tests.ui.conftest import event_loop_gaps, open_model, wait_for_result

CRASH_LOOP_FILES = ["seed_4294967295", "profile_point_n_minus_1", "profile_median_fast"]


def no_internal_error(window) -> None:
    message = window.statusBar().currentMessage()
    assert "internal error" not in message and "Traceback" not in message, message


def assert_still_computes(qtbot, window, text: str = "Still computing after all that.") -> None:
    window.session_model.update(model="minilm", heads=None, text=text)
    wait_for_result(qtbot, window, lambda r: "computing" in r.query_tokens, timeout=30_000)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30_000)


def test_every_session_file_and_special_file_opens_or_is_refused(make_window, qtbot, tmp_path):
    window = make_window()
    for path in [*SESSIONS, *special_files(tmp_path).values()]:
        opened = window.files.open_path(path)
        message = window.statusBar().currentMessage()
        assert message.startswith("Opened" if opened else "⚠ not opened:"), (path.name, message)
        assert "\n" not in message
        if opened:
            window.files.save_to(tmp_path / "saved.attnsession")  # a lone surrogate must not stop a save
            assert Session.load(tmp_path / "saved.attnsession").text == window.session_model.session.text
            window.files.autosave()
            assert window.files.autosave_path().is_file()
    no_internal_error(window)
    assert_still_computes(qtbot, window)


@pytest.mark.parametrize("name", CRASH_LOOP_FILES)
def test_a_bad_last_session_starts_the_defaults_and_says_why(name, make_window, settings, qtbot):
    settings.setValue("session/json", (HOSTILE / "sessions" / f"{name}.attnsession").read_text())
    window = make_window(restore=True)
    assert window.session_model.session.text == Session().text
    assert "could not be restored" in window.statusBar().currentMessage()
    assert window.controls.seed.value() == window.session_model.session.seed


RELAUNCH = textwrap.dedent("""
    import sys
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication
    from attnstudio.ui.main_window import MainWindow

    app = QApplication([])
    settings = QSettings(sys.argv[1], QSettings.IniFormat)
    window = MainWindow(settings=settings, restore=True)
    window.show()
    window.first_result.connect(lambda: QTimer.singleShot(0, window.close))
    QTimer.singleShot(60_000, app.quit)
    app.exec()
    print("started and quit:", window.results.result is not None)
""")


def test_relaunching_after_a_crash_loop_session_starts_every_time(tmp_path):
    ini = tmp_path / "settings.ini"
    settings = QSettings(str(ini), QSettings.IniFormat)
    document = json.loads((HOSTILE / "sessions" / "seed_4294967295.attnsession").read_text())
    settings.setValue("session/json", json.dumps(document))
    settings.sync()
    for _ in range(2):  # the first launch used to abort (exit 134) and so did every one after it
        done = subprocess.run([sys.executable, "-c", RELAUNCH, str(ini)], capture_output=True, check=False, text=True,
                              cwd=PROJECT_ROOT, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "started and quit: True" in done.stdout
        assert "QThread" not in done.stderr and "Traceback" not in done.stderr


def test_every_model_folder_is_loaded_or_refused_by_the_gui(make_window, qtbot):
    window = make_window()
    for folder in MODELS:
        loaded = open_model(qtbot, window, str(folder))
        assert loaded == (folder.name in ("good", "tokenizer_catastrophic_regex")), folder.name
        if not loaded:
            assert window.statusBar().currentMessage().startswith("⚠ "), folder.name
        no_internal_error(window)
    assert_still_computes(qtbot, window)


def test_every_gguf_file_and_t5_folder_missing_a_file_is_loaded_or_refused(make_window, qtbot, tmp_path):
    """A damaged GGUF or a T5 folder short of a file changes nothing but the status bar's one line."""
    window = make_window()
    for path in [*GGUFS, *t5_folders_missing_files(tmp_path).values()]:
        before = window.session_model.session.model
        loaded = open_model(qtbot, window, str(path))
        assert loaded == (path.name == "good.gguf"), path.name
        message = window.statusBar().currentMessage()
        if not loaded:
            assert message.startswith("⚠ ") and "\n" not in message and path.name in message, (path.name, message)
            assert window.session_model.session.model == before, "a refused model replaced the one in use"
            assert not window.stale_label.isVisible(), "nothing changed: the views do show the current settings"
        no_internal_error(window)
    assert_still_computes(qtbot, window)


def test_every_hostile_text_file_opens_or_is_refused_in_one_line(make_window, qtbot, monkeypatch):
    """File → Open text… on a binary, non-UTF-8 or empty file: a status line and a dialog; the text is kept."""
    window = make_window()
    dialogs = []
    monkeypatch.setattr(window, "warn", lambda title, message: dialogs.append((title, message)))
    for path in OPEN_TEXTS:
        text = window.session_model.session.text
        opened = window.documents.load_text(path)
        message = window.statusBar().currentMessage()
        assert opened == path.name.startswith("good_"), (path.name, message)
        if opened:
            assert message == f"Opened {path.name}" and "\r" not in window.session_model.session.text
            continue
        assert message.startswith(f"⚠ cannot open {path.name}: ") and "\n" not in message, message
        assert dialogs[-1] == ("Cannot open text", message.removeprefix("⚠ "))
        assert window.session_model.session.text == text, "a refused file changed the text"
        assert not window.stale_label.isVisible(), "nothing changed: the views do show the current settings"
    reasons = {title_and_message[1].split(": ", 1)[1] for title_and_message in dialogs}
    assert any("not UTF-8" in reason for reason in reasons) and any("UTF-16" in reason for reason in reasons)
    no_internal_error(window)
    assert_still_computes(qtbot, window)


@pytest.mark.parametrize("name", sorted(MISSING_MODEL_SESSIONS))
def test_a_session_whose_model_is_gone_opens_says_why_and_recovers(name, make_window, qtbot):
    """The session's text and settings open; the missing model is one status line; picking a model computes."""
    window = make_window()
    path = HOSTILE / "sessions" / f"{name}.attnsession"
    with qtbot.waitSignal(window.controller.failed, timeout=30_000) as failed:
        assert window.files.open_path(path)
    model = Session.load(path).model
    assert model in failed.args[0] and "\n" not in failed.args[0]
    assert window.statusBar().currentMessage() == f"⚠ {failed.args[0]}"
    assert window.session_model.session.text == Session.load(path).text, "the session's text is kept"
    no_internal_error(window)
    assert_still_computes(qtbot, window)


def test_an_over_long_t5_source_is_cut_and_the_status_bar_says_so(make_window, qtbot):
    window = make_window()
    assert open_model(qtbot, window, str(TINY_T5))
    long_text = (HOSTILE / "texts" / "ten_thousand_tokens.txt").read_text(encoding="utf-8")
    window.session_model.update(text=long_text)
    wait_for_result(qtbot, window, lambda r: len(r.query_tokens) == 512, timeout=60_000)
    qtbot.waitUntil(lambda: "so it was truncated" in window.statusBar().currentMessage(), timeout=10_000)
    assert window.statusBar().currentMessage() == \
        "The source text has 40002 tokens; the model takes 512, so it was truncated."
    no_internal_error(window)
    assert_still_computes(qtbot, window)


def test_a_tokenizer_panic_leaves_the_app_computing(make_window, qtbot):
    window = make_window()
    assert open_model(qtbot, window, str(HOSTILE / "models" / "tokenizer_catastrophic_regex"))
    window.session_model.update(text="a" * 60 + "b")
    qtbot.waitUntil(lambda: "tokenizer failed" in window.statusBar().currentMessage(), timeout=30_000)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=10_000)
    assert_still_computes(qtbot, window)


class _StuckEngine:
    """An engine whose first compute never returns in time, and whose second raises a panic-like error."""

    def __init__(self, real):
        self.real, self.calls, self.release = real, 0, threading.Event()

    def model(self, session):
        return self.real.model(session)

    def compute(self, session, **options):
        self.calls += 1
        if self.calls == 1:
            self.release.wait(30)
        if self.calls == 2:
            raise type("PanicException", (BaseException,), {})("Onig: retry-limit-in-match over")
        return self.real.compute(session, **options)


def test_a_stuck_compute_is_abandoned_and_a_panic_is_survived(qtbot):
    engine = _StuckEngine(Engine())
    controller = ComputeController(engine, timeout_ms=300)
    failures, results = [], []
    controller.failed.connect(failures.append)
    controller.result_ready.connect(results.append)
    try:
        controller.request(Session(text="stuck", backend="numpy"))
        qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
        assert "longer than 0.3 s and was abandoned" in failures[0] and not controller.busy
        assert controller.abandoned == 1
        controller._watchdog.setInterval(60_000)  # the real computes below may load the model first
        controller.request(Session(text="panics", backend="numpy"))
        qtbot.waitUntil(lambda: len(failures) == 2, timeout=10_000)
        assert "PanicException" in failures[1] and not controller.busy
        controller.request(Session(text="works again", backend="numpy"))
        qtbot.waitUntil(lambda: bool(results), timeout=30_000)
        engine.release.set()  # the abandoned compute finishes late: its answer is dropped
        qtbot.wait(500)
        assert len(results) == 1 and "again" in results[0].query_tokens
    finally:
        engine.release.set()
        controller.shutdown()


@pytest.mark.parametrize("path", TEXTS, ids=[p.stem for p in TEXTS])
def test_every_text_is_shown_without_stalling_the_gui(path, make_window, qtbot):
    window = make_window()
    text = path.read_text(encoding="utf-8")
    with event_loop_gaps() as gaps:
        window.controls.text.setPlainText(text)  # what a paste does: Qt lays the text out here
        qtbot.waitUntil(lambda: window.results.result is not None and not window.controller.busy
                        and window.session_model.session.text == text, timeout=60_000)
        qtbot.wait(100)
    no_internal_error(window)
    if path.stem == "one_token_99k_chars":
        assert max(gaps) < 1000, f"a 99k-character word stalled the GUI {max(gaps)} ms (it was seconds)"


def test_temperature_0_001_shows_as_0_001(make_window):
    window = make_window()
    assert window.session_model.update(temperature=0.001)
    assert window.controls.temperature.value() == pytest.approx(0.001)
    assert window.controls.temperature.text().rstrip("0").endswith("0.001")


def test_lone_surrogates_typed_or_pasted_are_replaced_and_saved(make_window, tmp_path):
    window = make_window()
    assert window.session_model.update(text="typed \ud800 here")
    assert window.session_model.session.text == "typed \ufffd here"
    assert window.files.save_to(tmp_path / "s.attnsession")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Session.load(tmp_path / "s.attnsession").text == "typed \ufffd here"


def test_the_largest_synthetic_model_is_refused_beyond_the_limit_and_cached_within_it():
    with pytest.raises(InvalidSetting, match="heads × d_k must be at most 2048"):
        Session(model="synthetic", heads=64, d_k=512).validate()
    engine = Engine()
    session = Session(model="synthetic", heads=64, d_k=32, d_model=2048, backend="numpy")
    engine.compute(session)
    hits = synthetic_parameters.cache_info().hits
    engine.compute(dataclasses.replace(session, text="Typing a new sentence."))
    assert synthetic_parameters.cache_info().hits == hits + 1, "the second compute reused the seeded weights"


def test_selftest_leaves_no_temporary_folder(tmp_path):
    scratch = tmp_path / "tmp"  # its own TMPDIR: other processes' self-tests do not race this check
    scratch.mkdir()
    done = subprocess.run([sys.executable, "-m", "attnstudio", "--selftest", str(tmp_path / "shot.png")],
                          capture_output=True, check=False, text=True, cwd=PROJECT_ROOT, timeout=180,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "shot.png").is_file()
    assert not list(scratch.glob("attnstudio-selftest-*"))


class _SlowLoadEngine:
    """An engine whose model takes longer to load than the watchdog allows a compute (a cold GGUF on a busy
    machine), then computes at once."""

    def __init__(self, real):
        self.real, self.loads = real, 0

    def model(self, session):
        self.loads += 1
        time.sleep(1.0)
        return self.real.model(session)

    def compute(self, session, **options):
        return self.real.compute(session, **options)


def test_a_slow_model_load_is_not_abandoned_as_a_stuck_compute(qtbot):
    engine = _SlowLoadEngine(Engine())
    engine.real.model(Session(text="warm", backend="numpy"))  # the real load, before the clock matters
    controller = ComputeController(engine, timeout_ms=300)
    failures, results = [], []
    controller.failed.connect(failures.append)
    controller.result_ready.connect(results.append)
    try:
        controller.request(Session(text="a slow load", backend="numpy"))
        qtbot.waitUntil(lambda: bool(results) or bool(failures), timeout=10_000)
        assert not failures and controller.abandoned == 0, failures
        assert engine.loads == 1 and "slow" in results[0].query_tokens
    finally:
        controller.shutdown()
