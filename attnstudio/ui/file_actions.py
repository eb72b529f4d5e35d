"""Sessions on disk and exports: save/open/recent, autosave and crash recovery, images, weights, clipboard.

Every write is atomic; a file that cannot be read or written gives a clear message and changes nothing.
"""
from __future__ import annotations

import datetime
import os
import secrets
import warnings
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QMessageBox, QProgressDialog, QWidget

from attnstudio.errors import AttnStudioError
from attnstudio.export.images import export_view
from attnstudio.export.session_export import caption_for, weights_csv, weights_npy
from attnstudio.fileio import write_atomic
from attnstudio.limits import LIMITS
from attnstudio.session import SESSION_SUFFIX, Session
from attnstudio.ui.dialogs import warn
from attnstudio.ui.offscreen import export_views
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel

MAX_RECENT = 8
AUTOSAVE_PREFIX = "autosave-"
AUTOSAVE_MS = 2000
SESSION_FILTER = f"attnstudio session (*{SESSION_SUFFIX})"
IMAGE_FILTER = "PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf)"


class FileActions(QObject):
    """The File menu's work for one window, given exactly what it touches.

    ``session_model`` is saved, opened and autosaved; ``results`` and ``views`` (name -> view) are
    exported; ``settings`` keeps the recent files and places the autosave; ``parent`` owns the dialogs.
    It reports through signals: ``message(text, timeout_ms)`` for the status bar, ``failed(text)`` for an
    error, ``title_changed(text)`` when the window's file changes.
    """

    message = Signal(str, int)
    failed = Signal(str)
    title_changed = Signal(str)

    def __init__(self, session_model: SessionModel, results: ResultModel, views: dict[str, QWidget],
                 settings: QSettings, parent: QWidget):
        super().__init__(parent)
        self.parent_widget = parent
        self.session_model, self.results, self.views, self.settings = session_model, results, views, settings
        self.current_path: Path | None = None
        self.recent_menu = QMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self._instance = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._lock: QLockFile | None = None
        self._claimed: dict[Path, QLockFile] = {}  # orphaned autosaves this window is asking about
        self.recovery_box: QMessageBox | None = None
        session_model.edited.connect(self._autosave_timer.start)

    # --- where things live --------------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        files = [value] if isinstance(value, str) else list(value or [])
        return [f for f in files if f]

    def _remember(self, path: Path) -> None:
        files = [str(path)] + [f for f in self.recent_files() if f != str(path)]
        self.settings.setValue("recent", files[:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for index, name in enumerate(files):
            self.recent_menu.addAction(f"&{index + 1} {name}", lambda n=name: self.open_path(n))
        if not files:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    # --- sessions -----------------------------------------------------------------------------------------
    def save(self) -> bool:
        return self.save_to(self.current_path) if self.current_path else self.save_as()

    def save_as(self) -> bool:
        start = str(self.current_path or Path.home() / f"untitled{SESSION_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Save session", start, SESSION_FILTER)
        if not path:
            return False
        if not path.endswith(SESSION_SUFFIX):
            path += SESSION_SUFFIX
        return self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        try:
            self.session_model.session.save(path)
        except AttnStudioError as error:
            return self._refuse(f"not saved: {error}", "Cannot save the session", str(error))
        self._set_current(Path(path))
        self.message.emit(f"Saved {path}", 5000)
        return True

    def _set_current(self, path: Path) -> None:
        """``path`` is this window's file now: remembered in Recent files and named in the title."""
        self.current_path = path
        self._remember(path)
        self.title_changed.emit(f"attnstudio — {path.name}")

    def _refuse(self, status: str, title: str, detail: str) -> bool:
        """Say why a file operation did nothing: on the status line and in a warning box. Returns False."""
        self.failed.emit(status)
        warn(self.parent_widget, title, detail)
        return False

    def open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open session", str(Path.home()),
                                              f"{SESSION_FILTER};;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        """Open a session file; a damaged or newer file leaves the current session untouched."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session = Session.load(path)
            self.session_model.replace(session)  # refuses a head count the session's model cannot take
        except AttnStudioError as error:
            return self._refuse(f"not opened: {error}", "Cannot open the session", str(error))
        self._set_current(Path(path))
        notes = "; ".join(str(w.message) for w in caught)
        self.message.emit(f"Opened {path}" + (f" ({notes})" if notes else ""), 8000)
        return True

    # --- autosave and crash recovery ---------------------------------------------------------------------
    # Each window autosaves into its own file, autosave-<id>.attnsession, and holds autosave-<id>.lock while
    # it runs. A clean close deletes both. An autosave whose lock is free belongs to a window that crashed:
    # that one, and only that one, is offered for recovery, and it stays on disk until the user answers.
    def autosave_folder(self) -> Path:
        if self.settings.fileName().endswith(".ini"):  # tests and portable setups keep autosave beside the settings
            return Path(self.settings.fileName()).parent
        return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".attnstudio")

    def autosave_path(self) -> Path:
        return self.autosave_folder() / f"{AUTOSAVE_PREFIX}{self._instance}{SESSION_SUFFIX}"

    def autosave(self) -> None:
        try:
            self.autosave_folder().mkdir(parents=True, exist_ok=True)
            self.session_model.session.save(self.autosave_path())
        except (AttnStudioError, OSError) as error:
            self.message.emit(f"autosave failed: {error}", 5000)

    def mark_running(self, *, look_for_orphans: bool = True) -> list[Path]:
        """Take this window's autosave lock; return the autosaves left by windows that did not close cleanly."""
        try:
            self.autosave_folder().mkdir(parents=True, exist_ok=True)
        except OSError:
            return []
        self._lock = _lock_file(self.autosave_path())
        self._lock.tryLock(0)
        return self.orphaned_autosaves() if look_for_orphans else []

    def orphaned_autosaves(self) -> list[Path]:
        """Autosaves (newest first) whose window is gone: nobody holds their lock, and nobody is deciding."""
        found = []
        for path in self.autosave_folder().glob(f"{AUTOSAVE_PREFIX}*{SESSION_SUFFIX}"):
            if path == self.autosave_path() or path in self._claimed or not path.is_file():
                continue
            lock = _lock_file(path)
            if lock.tryLock(0):  # its owner is gone (Qt checks the process id): claim it while we ask
                self._claimed[path] = lock
                found.append(path)
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def mark_closed(self) -> None:
        """A clean close: the session lives on in the settings; this window's autosave is no longer needed."""
        self._autosave_timer.stop()
        self.autosave_path().unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.unlock()
        for lock in self._claimed.values():  # unanswered recoveries stay for the next start
            lock.unlock()
        self._claimed.clear()

    def offer_recovery(self, orphans: list[Path] | None = None) -> QMessageBox | None:
        """Ask about the newest orphaned autosave; the others are asked about after it."""
        orphans = list(self._claimed) if orphans is None else orphans
        if not orphans:
            return None
        path, rest = orphans[0], orphans[1:]
        when = _modified(path)
        box = QMessageBox(QMessageBox.Question, "Restore unsaved work?",
                          f"An attnstudio window did not close properly; it autosaved its session {when}. "
                          f"Restore it here as an untitled session? (No deletes that autosave.)",
                          QMessageBox.Yes | QMessageBox.No, self.parent_widget)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.finished.connect(lambda answer: self._on_recovery_answered(path, answer, rest))
        box.open()
        self.recovery_box = box
        return box

    def _on_recovery_answered(self, path: Path, answer: int, rest: list[Path]) -> None:
        if answer == QMessageBox.Yes:
            self.recover(path)
        elif answer == QMessageBox.No:
            self._forget_orphan(path)
        if rest:
            self.offer_recovery(rest)

    def recover(self, path: Path) -> bool:
        """Restore an orphaned autosave as an untitled session, then delete it (its work is in ours now)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                session = Session.load(path)
        except AttnStudioError as error:
            return self._refuse(f"the autosave could not be restored: {error}", "Cannot restore the autosave",
                                f"{error}\n\nIt is kept as {path}.")
        self.session_model.replace(session)
        self.current_path = None  # untitled: Save asks for a name, nothing joins Recent files
        self.title_changed.emit("attnstudio — recovered session (unsaved)")
        self.autosave()
        if self.autosave_path().is_file():
            self._forget_orphan(path)
        self.message.emit("Restored the autosaved session; save it to keep it", 8000)
        return True

    def _forget_orphan(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        lock = self._claimed.pop(path, None)
        if lock is not None:
            lock.unlock()

    # --- exports -----------------------------------------------------------------------------------------
    def current_view_name(self) -> str:
        view = self.session_model.session.view
        return view if view in self.views else "heatmap"

    def caption(self) -> str | None:
        """The caption of what is on screen: the shown result's own settings, not the ones being edited."""
        results = self.results
        return None if results.result is None else caption_for(results.shown, results.result,
                                                               self.current_view_name())

    def export_image(self) -> None:
        name = self.current_view_name()
        path, chosen = QFileDialog.getSaveFileName(self.parent_widget, "Export image", str(Path.home() / f"{name}.png"),
                                                   IMAGE_FILTER)
        if not path:
            return
        if not Path(path).suffix:
            path += {"SVG": ".svg", "PDF": ".pdf"}.get(chosen[:3], ".png")
        scale = 2.0
        if path.lower().endswith(".png"):
            choice, ok = QInputDialog.getItem(self.parent_widget, "PNG resolution", "Scale of the screen size:",
                                              ["2×", "3×", "4×", "1×"], 0, False)
            if not ok:
                return
            scale = float(choice.rstrip("×"))
        self.export_image_to(Path(path), scale=scale)

    def export_image_to(self, path: Path, *, view: str | None = None, scale: float = 2.0) -> bool:
        target = self.views[view or self.current_view_name()].export_target()
        try:
            LIMITS["export_scale"].check(scale)
            export_view(target, path, scale=scale, caption=self.caption())
        except AttnStudioError as error:
            self.failed.emit(f"not exported: {error}")
            return False
        self.message.emit(f"Exported {path}", 5000)
        return True

    def export_session_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent_widget, "Export every view of this session into a folder")
        if folder:
            self.export_session_to(Path(folder))

    def export_session_to(self, folder: Path) -> bool:
        progress = QProgressDialog("Exporting the session…", "", 0, 100, self.parent_widget)
        progress.setCancelButton(None)
        progress.setMinimumDuration(300)

        def report(done: int, total: int, label: str) -> None:
            progress.setMaximum(total)
            progress.setValue(done)
            progress.setLabelText(f"Exporting {label}…")
            QGuiApplication.processEvents()

        try:
            written = export_views(self.views, self.session_model, self.results, folder, report)
        except AttnStudioError as error:
            self.failed.emit(f"not exported: {error}")
            return False
        finally:
            progress.close()
        self.message.emit(f"Exported {len(written)} files to {folder} (report.html)", 8000)
        return True

    def copy_view(self) -> None:
        QGuiApplication.clipboard().setImage(self.views[self.current_view_name()].grab().toImage())
        self.message.emit("Copied the view to the clipboard", 3000)

    def export_weights(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Export weights", str(Path.home() / "weights.csv"),
                                              "CSV, selected head (*.csv);;NumPy, every layer and head (*.npy)")
        if path:
            self.export_weights_to(Path(path))

    def export_weights_to(self, path: Path) -> bool:
        results = self.results
        result = results.result
        if result is None:
            return False
        layer, head = results.layer, results.head
        try:
            payload = weights_npy(result) if path.suffix.lower() == ".npy" else weights_csv(result, layer, head)
            write_atomic(path, payload)
        except AttnStudioError as error:
            self.failed.emit(f"not exported: {error}")
            return False
        self.message.emit(f"Exported {path}", 5000)
        return True


def _lock_file(autosave: Path) -> QLockFile:
    lock = QLockFile(str(autosave.with_suffix(".lock")))
    lock.setStaleLockTime(0)  # stale only when its process is gone, however long a window stays open
    return lock


def _modified(path: Path) -> str:
    try:
        stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime)
    except OSError:
        return "earlier"
    return f"at {stamp:%H:%M} on {stamp:%d %b %Y}"
