"""Sessions on disk and exports: save/open/recent, autosave and crash recovery, images, weights, clipboard.

Every write is atomic; a file that cannot be read or written gives a clear message and changes nothing.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QMessageBox, QProgressDialog

from attnstudio.errors import AttnStudioError
from attnstudio.export.images import export_view
from attnstudio.export.session_export import caption_for, weights_csv, weights_npy
from attnstudio.fileio import write_atomic
from attnstudio.session import SESSION_SUFFIX, Session
from attnstudio.ui.offscreen import export_views

MAX_RECENT = 8
AUTOSAVE_MS = 2000
SESSION_FILTER = f"attnstudio session (*{SESSION_SUFFIX})"
IMAGE_FILTER = "PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf)"


class FileActions(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.session, self.settings = window.session, window.settings
        self.current_path: Path | None = None
        self.recent_menu = QMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self.session.changed.connect(lambda _name: self._autosave_timer.start())

    # --- where things live --------------------------------------------------------------------------------
    def autosave_path(self) -> Path:
        folder = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".attnstudio")
        if self.settings.fileName().endswith(".ini"):  # tests and portable setups keep autosave beside the settings
            folder = Path(self.settings.fileName()).parent
        return folder / f"autosave{SESSION_SUFFIX}"

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
        path, _ = QFileDialog.getSaveFileName(self.window, "Save session", start, SESSION_FILTER)
        if not path:
            return False
        if not path.endswith(SESSION_SUFFIX):
            path += SESSION_SUFFIX
        return self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        try:
            self.session.session.save(path)
        except AttnStudioError as error:
            self.window.show_error(f"not saved: {error}")
            self.window.warn("Cannot save the session", str(error))
            return False
        self.current_path = Path(path)
        self._remember(self.current_path)
        self.window.setWindowTitle(f"attnstudio — {self.current_path.name}")
        self.window.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open session", str(Path.home()),
                                              f"{SESSION_FILTER};;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        """Open a session file; a damaged or newer file leaves the current session untouched."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session = Session.load(path)
            self.session.replace(session)  # refuses a head count the session's model cannot take
        except AttnStudioError as error:
            self.window.show_error(f"not opened: {error}")
            self.window.warn("Cannot open the session", str(error))
            return False
        self.current_path = Path(path)
        self._remember(self.current_path)
        self.window.setWindowTitle(f"attnstudio — {self.current_path.name}")
        notes = "; ".join(str(w.message) for w in caught)
        self.window.statusBar().showMessage(f"Opened {path}" + (f" ({notes})" if notes else ""), 8000)
        return True

    # --- autosave and crash recovery ---------------------------------------------------------------------
    def autosave(self) -> None:
        try:
            self.autosave_path().parent.mkdir(parents=True, exist_ok=True)
            self.session.session.save(self.autosave_path())
        except (AttnStudioError, OSError) as error:
            self.window.statusBar().showMessage(f"autosave failed: {error}", 5000)

    def mark_running(self) -> bool:
        """Note that the app is running; True if the last run did not close cleanly and left an autosave."""
        crashed = self.settings.value("running", "false") == "true" and self.autosave_path().is_file()
        self.settings.setValue("running", "true")
        self.settings.sync()
        return crashed

    def mark_closed(self) -> None:
        self._autosave_timer.stop()
        self.autosave()
        self.settings.setValue("running", "false")
        self.settings.sync()

    def offer_recovery(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Question, "Restore your last session?",
                          "attnstudio did not close properly last time. Restore the session it autosaved?",
                          QMessageBox.Yes | QMessageBox.No, self.window)
        box.finished.connect(lambda answer: self.open_path(self.autosave_path()) if answer == QMessageBox.Yes else None)
        box.open()
        return box

    # --- exports -----------------------------------------------------------------------------------------
    def current_view_name(self) -> str:
        return self.session.view if self.session.view in self.window.views else "heatmap"

    def caption(self) -> str | None:
        """The caption of what is on screen: the shown result's own settings, not the ones being edited."""
        results = self.window.results
        return None if results.result is None else caption_for(results.shown, results.result)

    def export_image(self) -> None:
        name = self.current_view_name()
        path, chosen = QFileDialog.getSaveFileName(self.window, "Export image", str(Path.home() / f"{name}.png"),
                                                   IMAGE_FILTER)
        if not path:
            return
        if not Path(path).suffix:
            path += {"SVG": ".svg", "PDF": ".pdf"}.get(chosen[:3], ".png")
        scale = 2.0
        if path.lower().endswith(".png"):
            choice, ok = QInputDialog.getItem(self.window, "PNG resolution", "Scale of the screen size:",
                                              ["2×", "3×", "4×", "1×"], 0, False)
            if not ok:
                return
            scale = float(choice.rstrip("×"))
        self.export_image_to(Path(path), scale=scale)

    def export_image_to(self, path: Path, *, view: str | None = None, scale: float = 2.0) -> bool:
        target = self.window.views[view or self.current_view_name()].export_target()
        try:
            export_view(target, path, scale=scale, caption=self.caption())
        except AttnStudioError as error:
            self.window.show_error(f"not exported: {error}")
            return False
        self.window.statusBar().showMessage(f"Exported {path}", 5000)
        return True

    def export_session_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export every view of this session into a folder")
        if folder:
            self.export_session_to(Path(folder))

    def export_session_to(self, folder: Path) -> bool:
        progress = QProgressDialog("Exporting the session…", "", 0, 100, self.window)
        progress.setCancelButton(None)
        progress.setMinimumDuration(300)

        def report(done: int, total: int, label: str) -> None:
            progress.setMaximum(total)
            progress.setValue(done)
            progress.setLabelText(f"Exporting {label}…")
            QGuiApplication.processEvents()

        try:
            written = export_views(self.window.views, self.session, self.window.results, folder, report)
        except AttnStudioError as error:
            self.window.show_error(f"not exported: {error}")
            return False
        finally:
            progress.close()
        self.window.statusBar().showMessage(f"Exported {len(written)} files to {folder} (report.html)", 8000)
        return True

    def copy_view(self) -> None:
        QGuiApplication.clipboard().setImage(self.window.views[self.current_view_name()].grab().toImage())
        self.window.statusBar().showMessage("Copied the view to the clipboard", 3000)

    def export_weights(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export weights", str(Path.home() / "weights.csv"),
                                              "CSV, selected head (*.csv);;NumPy, every layer and head (*.npy)")
        if path:
            self.export_weights_to(Path(path))

    def export_weights_to(self, path: Path) -> bool:
        results = self.window.results
        result = results.result
        if result is None:
            return False
        layer, head = results.layer, results.head
        try:
            payload = weights_npy(result) if path.suffix.lower() == ".npy" else weights_csv(result, layer, head)
            write_atomic(path, payload)
        except AttnStudioError as error:
            self.window.show_error(f"not exported: {error}")
            return False
        self.window.statusBar().showMessage(f"Exported {path}", 5000)
        return True
