"""Autosave and crash recovery with several windows: each window its own autosave and lock; only the
autosave of a window whose process is gone is offered, and it stays on disk until the user answers."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from attnstudio.session import Session
from tests.conftest import PROJECT_ROOT

CRASHING_WINDOW = textwrap.dedent("""
    import os, signal, sys
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    from attnstudio.session import Session
    from attnstudio.ui.main_window import MainWindow

    app = QApplication([])
    window = MainWindow(Session(backend="numpy"), settings=QSettings(sys.argv[1], QSettings.IniFormat), restore=False)
    window.session_model.update(text=sys.argv[2])
    window.files.autosave()
    print(window.files.autosave_path(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no clean-up
""")


def crash_a_window(settings_file: str, text: str):
    done = subprocess.run([sys.executable, "-c", CRASHING_WINDOW, settings_file, text], capture_output=True,
                          check=False, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def test_two_windows_keep_their_own_autosaves_and_ask_nothing(make_window, qtbot):
    first = make_window()
    second = make_window(Session(backend="numpy"), restore=True)
    assert second.files.recovery_box is None, "a running window is not a crashed one"
    first.session_model.update(text="First window.")
    second.session_model.update(text="Second window.")
    first.files.autosave()
    second.files.autosave()
    assert first.files.autosave_path() != second.files.autosave_path()
    first.close()
    assert not first.files.autosave_path().exists(), "a clean close removes its own autosave"
    assert Session.load(second.files.autosave_path()).text == "Second window."
    third = make_window(Session(backend="numpy"), restore=True)
    assert third.files.recovery_box is None, "the second window is still running"


def test_a_killed_window_is_offered_once_and_kept_until_answered(make_window, settings, qtbot):
    autosave = crash_a_window(settings.fileName(), "Work from a window that was killed.")
    window = make_window(Session(backend="numpy"), restore=True)
    box = window.files.recovery_box
    assert box is not None and box.isVisible()
    other = make_window(Session(backend="numpy"), restore=True)
    assert other.files.recovery_box is None, "the first window is already asking about it"
    window.close()  # closed without an answer: the crashed window's autosave is untouched
    assert Session.load(autosave).text == "Work from a window that was killed."
    again = make_window(Session(backend="numpy"), restore=True)
    assert again.files.recovery_box is not None, "asked again at the next start"
    again.files.recovery_box.done(QMessageBox.No)
    qtbot.waitUntil(lambda: not Path(autosave).exists())
    assert again.session_model.session.text != "Work from a window that was killed."
