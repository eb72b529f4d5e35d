"""Starting the app, and the self-test the installers run (see ui/selftest.py)."""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

LAUNCHED_AT = time.perf_counter()  # where the process's start time is unknown (not Linux)
SELFTEST_TIMEOUT_MS = 60_000


def run_app(selftest: str | None = None, model: str | None = None) -> int:
    """Open the main window; with ``selftest`` open it on the environment's platform (offscreen only where
    there is no display), check its text has glyphs, save a screenshot and exit (0 only when all of it worked).
    ``model``: start on this model (with the default text) instead of the last session."""
    if selftest:
        from attnstudio.ui.selftest import choose_platform

        platform = choose_platform()
        if platform:
            os.environ["QT_QPA_PLATFORM"] = platform
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from attnstudio.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("attnstudio")
    app.setApplicationName("attnstudio")
    app.setDesktopFileName("attnstudio")
    settings = None
    if selftest:  # the self-test must not touch the user's settings, recent files or autosave
        from PySide6.QtCore import QSettings

        scratch = tempfile.mkdtemp(prefix="attnstudio-selftest-")
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.IniFormat)
    window = _open_window(MainWindow, settings, restore=not selftest, model=model)
    window.show()
    # Objects alive now live as long as the app: keep them out of the cyclic collector's full passes,
    # which would otherwise stall the event loop while the user types.
    gc.collect()
    gc.freeze()
    if selftest:
        from attnstudio.ui.heartbeat import Heartbeat

        outcome = {"code": 1}
        heartbeat = Heartbeat(parent=window)  # the event loop's longest stall until the first heatmap
        QTimer.singleShot(0, heartbeat.start)

        def capture():
            from attnstudio.core.backend import few_rows_kernel
            from attnstudio.ui.selftest import missing_glyphs

            window.repaint()
            app.processEvents()
            painted_ms = milliseconds_since_start()
            stall_ms = heartbeat.stop()
            path = Path(selftest)
            no_glyphs = missing_glyphs(window)
            if not window.grab().save(str(path)):
                print(f"selftest: cannot write {path}", file=sys.stderr)
            elif no_glyphs:
                print(f"selftest: failed: {no_glyphs} (install fonts, e.g. fonts-dejavu-core; screenshot {path})",
                      file=sys.stderr)
            else:
                result = window.results.result
                resident = resident_mib()
                memory = "" if resident is None else f"; resident {resident:.0f} MiB"
                kernel = few_rows_kernel()
                kernel = ("not built" if kernel is None else
                          f"{kernel[0].KERNEL} on {kernel[1]} core{'s' if kernel[1] > 1 else ''}")
                print(f"selftest: first heatmap painted {painted_ms:.0f} ms after launch on the "
                      f"{app.platformName()} platform; {result.model_name}, {len(result.query_tokens)} tokens, "
                      f"{result.num_layers} layers x {result.heads} heads on {result.backend.name}; text drawn with "
                      f"{window.fontInfo().family()}{memory}; few-rows kernel {kernel}; event loop's longest stall "
                      f"{stall_ms:.0f} ms; "
                      f"screenshot {path}")
                outcome["code"] = 0
            window.close()

        def fail(message: str):
            print(f"selftest: failed: {message}", file=sys.stderr)
            window.close()

        window.first_result.connect(lambda: QTimer.singleShot(0, capture))
        window.controller.failed.connect(fail)
        QTimer.singleShot(SELFTEST_TIMEOUT_MS, lambda: fail("no result within 60 s"))
        try:
            app.exec()
            _dispose(window)
        finally:
            settings.sync()
            shutil.rmtree(scratch, ignore_errors=True)  # its settings and autosave were only for this run
        return outcome["code"]
    code = app.exec()
    _dispose(window)
    return code


def _dispose(window) -> None:
    """Destroy the window's C++ objects now, while Python still runs: left to the interpreter's exit, Qt deletes
    them after Python's own teardown has begun, and their Python overrides (resize and geometry handlers of
    pyqtgraph items) then crash the process (seen as a segfault in 1 of 4 self-tests)."""
    import shiboken6

    if shiboken6.isValid(window):
        shiboken6.delete(window)


def milliseconds_since_start() -> float:
    """Milliseconds since this process started (Linux: its start time in /proc, so the interpreter's own start
    and every import count); elsewhere since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot, in clock ticks
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - started_s) * 1000
    except (OSError, ValueError, IndexError, AttributeError):
        return (time.perf_counter() - LAUNCHED_AT) * 1000


def resident_mib() -> float | None:
    """This process's resident memory in MiB (Linux), or None where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _open_window(window_class, settings, *, restore: bool, model: str | None = None):
    """The main window; restoring the last state must never stop the app from starting."""
    if model:  # the model asked for on the command line, with the default text
        from attnstudio.session import Session  # noqa: PLC0415

        return window_class(Session(model=model), settings=settings, restore=restore)
    try:
        return window_class(settings=settings, restore=restore)
    except Exception as error:  # start with the defaults instead, and say why
        if not restore:
            raise
        from PySide6.QtCore import QSettings

        store = settings if settings is not None else QSettings()
        store.remove("session/json")
        store.remove("window/state")
        window = window_class(settings=settings, restore=False)
        window.restore_problem = f"the last session could not be restored ({type(error).__name__}: {error}); " \
                                 f"started with the defaults"
        window.statusBar().showMessage(f"⚠ {window.restore_problem}", 20_000)
        return window
