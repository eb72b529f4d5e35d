"""Feeding the app a document: File → Open text…, dropping a file on the window, and the forward pass's
progress with a Stop button (a long document's pass takes a while on a laptop).

Pasting needs nothing here: the text box takes any amount of text, and the session's character limit
and the model's context (truncated with a notice in the status bar) bound what is computed.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QFileDialog, QToolButton

from attnstudio.errors import AttnStudioError, FileReadError
from attnstudio.fileio import read_regular_file
from attnstudio.limits import LIMITS

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
TEXT_FILTER = "Text files (*.txt *.md *.markdown *.text)"


def read_text_file(path: Path) -> tuple[str, str]:
    """(text, note) from a UTF-8 text file; note says what was cut ("" if nothing). Raises FileReadError."""
    path = Path(path)
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise FileReadError(f"cannot open {path.name}: attnstudio reads plain text files "
                            f"({', '.join(TEXT_SUFFIXES)})")
    payload = read_regular_file(path, int(LIMITS["long_text_file_bytes"].high), "text file")
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte-order mark (Windows Notepad's "Unicode")
        raise FileReadError(f"cannot open {path.name}: it is UTF-16 text; save it as UTF-8 and open it again")
    if b"\x00" in payload:
        raise FileReadError(f"cannot open {path.name}: it holds NUL bytes, so it is not a text file")
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileReadError(f"cannot open {path.name}: it is not UTF-8 text (byte 0x{payload[error.start]:02x} "
                            f"at offset {error.start}): a binary file, or text in another encoding (save it as "
                            f"UTF-8)") from None
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise FileReadError(f"cannot open {path.name}: it holds no text")
    limit = int(LIMITS["text_characters"].high)
    if len(text) > limit:
        return text[:limit], f"{path.name} has {len(text):,} characters; the first {limit:,} were loaded"
    return text, ""


class DocumentFeeder(QObject):
    """Wires File → Open text…, drag and drop of a text file, and the progress bar's Stop button to a window."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.stop_button = QToolButton()
        self.stop_button.setText("Stop")
        self.stop_button.setToolTip("Stop the forward pass of the long document (the views keep the last result)")
        self.stop_button.setVisible(False)
        self.stop_button.clicked.connect(window.controller.stop)
        window.statusBar().insertPermanentWidget(1, self.stop_button)
        controller = window.controller
        controller.progress.connect(self._on_progress)
        controller.busy_changed.connect(self._on_busy_changed)
        controller.cancelled.connect(
            lambda: window.statusBar().showMessage("Stopped: the forward pass was cancelled; the views keep the "
                                                   "last result.", 15_000))
        # A file dropped on the window: MainWindow's drag and drop handlers call drag_entered and dropped (an event
        # filter on the window would run Python for every event it gets, each taking the GIL from a busy worker);
        # one dropped on the text box comes through the filter on its viewport.
        window.setAcceptDrops(True)
        window.controls.text.viewport().installEventFilter(self)

    # --- progress ----------------------------------------------------------------------------------------
    def _on_progress(self, done: int, total: int) -> None:
        """One Qt call per layer where nothing else changed: each call hands the GIL back and forth with the busy
        worker: six per layer stalled the event loop for 30 ms, and two (value and tooltip) took up to 31 ms."""
        bar = self.window.busy
        if bar.maximum() != total or not bar.isTextVisible():  # the pass's first report: set the bar up once
            bar.setRange(0, total)
            bar.setFormat("layer %v/%m")
            bar.setTextVisible(True)
            bar.setToolTip(f"Long document: the bar counts the layers of the forward pass computed so far, out of "
                           f"{total}")
            self.stop_button.setVisible(True)
            self.window.statusBar().showMessage("Long document: the views keep the last result until this pass is "
                                                "done.")  # short enough to fit beside the bar at 1024 px
        bar.setValue(done)

    def _on_busy_changed(self, busy: bool) -> None:
        if not busy:
            bar = self.window.busy
            bar.setRange(0, 0)
            bar.setTextVisible(False)
            bar.setToolTip("Computing…")
            self.stop_button.setVisible(False)

    # --- opening a text ----------------------------------------------------------------------------------
    def open_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a text", "", f"{TEXT_FILTER};;All files (*)")
        if path:
            self.load_text(Path(path))

    def load_text(self, path: Path) -> bool:
        """Put the text of ``path`` in the session; a bad file is one line in the status bar and a dialog."""
        try:
            text, note = read_text_file(path)
        except AttnStudioError as error:
            self.window.show_file_error(str(error))
            self.window.warn("Cannot open text", str(error))
            return False
        if not self.window.session_model.update(text=text):
            return False
        self.window.statusBar().showMessage(f"Opened {Path(path).name}" + (f" — {note}" if note else ""), 15_000)
        return True

    def drag_entered(self, event) -> bool:
        """Accept a drag (enter or move) that carries a local file; True when accepted."""
        if self._local_file(event) is None:
            return False
        event.acceptProposedAction()
        return True

    def dropped(self, event) -> bool:
        """Open the local file a drop carries; True when it carried one."""
        path = self._local_file(event)
        if path is None:
            return False
        event.acceptProposedAction()
        self.load_text(path)
        return True

    def eventFilter(self, watched, event):  # noqa: N802 - Qt override
        if event.type() in (QEvent.DragEnter, QEvent.DragMove) and self.drag_entered(event):
            return True
        if event.type() == QEvent.Drop and self.dropped(event):
            return True
        return super().eventFilter(watched, event)

    @staticmethod
    def _local_file(event) -> Path | None:
        mime = event.mimeData()
        if mime is None or not mime.hasUrls():
            return None
        files = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
        return Path(files[0]) if files else None


def install(window) -> DocumentFeeder:
    """Add File → Open text… (after Open session…) and the rest of :class:`DocumentFeeder` to ``window``."""
    feeder = DocumentFeeder(window)
    file_menu = window.menuBar().actions()[0].menu()
    action = window._action(file_menu, "Open text…", "Ctrl+Shift+T", feeder.open_text,
                            "Read a UTF-8 .txt or .md file into the text box (a long document is fine)")
    separator = next(a for a in file_menu.actions() if a.isSeparator())
    file_menu.removeAction(action)
    file_menu.insertAction(separator, action)
    return feeder
