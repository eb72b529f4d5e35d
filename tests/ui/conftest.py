from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from attnstudio.session import Session


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    from attnstudio.ui.main_window import MainWindow

    windows = []

    def make(session: Session | None = None, restore: bool = False):
        if session is None and not restore:
            session = Session(backend="numpy")
        window = MainWindow(session, settings=settings, restore=restore)
        qtbot.addWidget(window)
        window.resize(1300, 820)
        with qtbot.waitSignal(window.first_result, timeout=30_000):
            window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.controller.shutdown()


def wait_for_result(qtbot, window, predicate, timeout=20_000):
    qtbot.waitUntil(lambda: window.results.result is not None and predicate(window.results.result), timeout=timeout)
