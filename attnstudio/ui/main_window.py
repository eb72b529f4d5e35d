"""The main window: controls in a dock, views in tabs, status bar, menus, shortcuts, persisted settings."""
from __future__ import annotations

import json
import warnings
from functools import partial
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QTabWidget,
)

from attnstudio import __version__
from attnstudio.engine import check_heads
from attnstudio.models.gguf_architectures import ARCHITECTURES
from attnstudio.models.loader import BUILTIN_MODEL
from attnstudio.models.registry import supported_families
from attnstudio.session import Session
from attnstudio.ui import long_document, model_loader
from attnstudio.ui.compute_worker import ComputeController
from attnstudio.ui.controls import ControlPanel
from attnstudio.ui.dialogs import warn
from attnstudio.ui.file_actions import FileActions
from attnstudio.ui.lazy_views import LazyViews
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.theme import apply_theme, style_canvas
from attnstudio.ui.views import VIEW_CLASSES, VIEW_LABELS

DOCK_MIN_WIDTH = 250
FIRST_COMPUTE_FALLBACK_MS = 300  # a window that is never shown computes anyway
ICON = Path(__file__).resolve().parent.parent / "resources" / "attnstudio.svg"
VIEWS = list(VIEW_LABELS.items())
STALE_NOTE_PX = 420
SHORTCUTS = [
    ("Ctrl+1 … Ctrl+9", "switch to one of the first nine views"), ("Alt+Up / Alt+Down", "previous / next layer"),
    ("Alt+Left / Alt+Right", "previous / next head"), ("Ctrl+L", "edit the text"),
    ("Ctrl+M", "edit mask cells in the heatmap"), ("Ctrl+R", "run the profiler"),
    ("Ctrl+O / Ctrl+S", "open / save a session"),
    ("Ctrl+Shift+O", "open a model folder"), ("Ctrl+Shift+T / drop a file", "open a text (.txt, .md)"),
    ("Ctrl+E / Ctrl+Shift+E", "export the view / the whole session"),
    ("Ctrl+Shift+C", "copy the view"),
    ("Wheel / drag / double-click", "zoom / pan / show all of a heatmap"),
    ("Ctrl+T", "light / dark theme"), ("F1", "this list"), ("Ctrl+Q", "quit"),
]


class _AfterFirstPaint(QObject):
    """Calls ``start`` once the window's first paint has reached the screen, then leaves the window alone (an
    ``event`` override would run Python for every event the window gets, each taking the GIL from a busy worker:
    a long document's progress updates stalled the event loop for tens of milliseconds)."""

    def __init__(self, window: QMainWindow, start):
        super().__init__(window)
        self._start = start
        window.installEventFilter(self)

    def eventFilter(self, watched, event):  # noqa: N802 - Qt override
        if event.type() == QEvent.Paint:
            watched.removeEventFilter(self)
            QTimer.singleShot(0, self._start)  # after this paint has reached the screen
        return False


class MainWindow(QMainWindow):
    first_result = Signal()

    def __init__(self, session: Session | None = None, settings: QSettings | None = None, *,
                 restore: bool = True):
        super().__init__()
        self._first_compute_started = False
        _AfterFirstPaint(self, self._start_first_compute)
        self.settings = settings if settings is not None else QSettings()
        self.restore_problem = ""
        if session is None and restore:
            session = self._restored_session()
        self.session_model = SessionModel(session)
        # The model loads in a thread while the window builds; the first compute finds it loaded (or waits for it).
        model_loader.preload(self._model_reference())
        self.results = ResultModel(self.session_model, self)
        self.controller = ComputeController(parent=self)
        self.theme = str(self.settings.value("theme", "light"))
        apply_theme(self.theme)
        self.setWindowTitle("attnstudio")
        self.setWindowIcon(QIcon(str(ICON)))

        model = self.session_model
        self._waiting_message = ""  # what a view built before the first result says instead of "Computing…"
        # Each view is built when its tab is first shown (or something asks for it): see ui/lazy_views.py.
        self.views = LazyViews({name: partial(view_class, model) if name == "profiler"
                                else partial(view_class, model, self.results)
                                for name, view_class in VIEW_CLASSES.items()}, self._on_view_built)
        self.tabs = QTabWidget()
        for key, label in VIEWS:
            self.tabs.addTab(self.views.containers[key], label)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)

        self.controls = ControlPanel(self.session_model, self.results)
        self.controls.open_model_folder_requested.connect(self.open_model_folder)
        self.controls.open_gguf_requested.connect(self.open_gguf_file)
        self.controls.found_model_chosen.connect(self.load_model_folder)
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the controls shrink to the dock: one bar
        scroll.setMinimumWidth(max(self.controls.minimumSizeHint().width(), DOCK_MIN_WIDTH)
                               + scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth())
        self.controls_dock = QDockWidget("Controls")
        self.controls_dock.setObjectName("controls")
        self.controls_dock.setWidget(scroll)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.controls_dock)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setVisible(False)
        self.busy.setToolTip("Computing…")
        self.backend_label, self.tokens_label, self.time_label = QLabel(), QLabel(), QLabel()
        self.stale_label = QLabel()  # stays until a result of the current settings is on screen
        self.stale_label.setVisible(False)
        for widget in (self.busy, self.stale_label, self.backend_label, self.tokens_label, self.time_label):
            self.statusBar().addPermanentWidget(widget)
        apply_theme(self.theme, self)  # every canvas item built above takes the theme from the one place
        self.files = FileActions(self.session_model, self.results, self.views, self.settings, self)
        self.files.message.connect(self.statusBar().showMessage)
        self.files.failed.connect(self.show_file_error)
        self.files.title_changed.connect(self.setWindowTitle)
        self._build_menus()
        self.documents = long_document.install(self)  # Open text…, drop a file, progress with Stop

        self.session_model.compute_needed.connect(self.request_compute)
        self.session_model.rejected.connect(self.show_error)
        self.session_model.view_changed.connect(self._on_view_changed)
        self.controller.result_ready.connect(self._on_result)
        self.controller.failed.connect(self.show_error)
        self.controller.busy_changed.connect(lambda _: self._sync_busy())
        self.model_loader = model_loader.ModelLoader(self)  # Open model…: read off the GUI thread, then switch
        self.model_loader.started.connect(self._show_loading)
        self.model_loader.loaded.connect(self._on_model_loaded)
        self.model_loader.failed.connect(self._on_model_failed)
        self._loading_model: str | None = None  # the model the status line says is loading
        self._seen_result = False
        self.last_error = ""
        self._message_from_result = False
        self._result_message = ""
        self._restore_layout()
        self._on_view_changed(self.session_model.session.view)
        if model_loader.needs_loading(self._model_reference()):
            self._show_loading(self._model_reference())  # the first paint already says what is loading
        # The first compute starts once the window has painted: running it alongside the first paint
        # starves the paint of the GIL and leaves the window black for half a second.
        QTimer.singleShot(FIRST_COMPUTE_FALLBACK_MS, self._start_first_compute)
        orphans = self.files.mark_running(look_for_orphans=restore)
        if orphans:
            self.files.offer_recovery(orphans)
        if self.restore_problem:
            self.statusBar().showMessage(f"⚠ {self.restore_problem}", 20_000)

    # --- state ------------------------------------------------------------------------------------------
    def _restored_session(self) -> Session | None:
        """The last session from the settings; anything wrong with it starts the defaults instead (and says why)."""
        stored = self.settings.value("session/json")
        if not stored:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                session = Session.from_json_text(str(stored), "the last session")
            check_heads(session.model, session.heads)
            return session
        except Exception as error:  # noqa: BLE001 - restoring state must never stop the app from starting
            self.restore_problem = f"the last session could not be restored ({error}); started with the defaults"
            return None

    def _restore_layout(self) -> None:
        geometry, state = self.settings.value("window/geometry"), self.settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("theme", self.theme)
        self.settings.setValue("session/json", json.dumps(self.session_model.session.to_json_dict()))
        self.settings.sync()

    def request_compute(self) -> None:
        self._first_compute_started = True
        if model_loader.needs_loading(self._model_reference()):  # the worker loads it first: say so meanwhile
            self._show_loading(self._model_reference())
        self.controller.request(self.session_model.session)

    def _model_reference(self) -> str:
        """The model the session computes with (the synthetic model takes the built-in one's vocabulary)."""
        session = self.session_model.session
        return BUILTIN_MODEL if session.is_synthetic else session.model

    def _show_loading(self, reference: str) -> None:
        """The status line (and, before the first result, every view) says which model is loading."""
        self._loading_model = reference
        message = f"Loading {model_loader.model_label(reference)}…"
        self.statusBar().showMessage(message)
        self._message_from_result = False
        if self.results.result is None:
            self._waiting_message = message
            self.controls.tokens.setText(message)
            for view in self.views.built().values():
                if hasattr(view, "show_waiting"):
                    view.show_waiting(message)
        self._sync_busy()

    def _end_loading(self) -> None:
        """The model the status line named has loaded (or failed): clear its line unless something else is shown."""
        if self._loading_model is None:
            return
        self._loading_model = None
        if self.statusBar().currentMessage().startswith("Loading "):
            self.statusBar().clearMessage()
        self._sync_busy()

    def _sync_busy(self) -> None:
        self.busy.setVisible(self.controller.busy or self._loading_model is not None)
        self.busy.setToolTip(f"Loading {model_loader.model_label(self._loading_model)}…" if self._loading_model
                             else "Computing…")

    def _start_first_compute(self) -> None:
        if not self._first_compute_started:
            self.request_compute()

    def dragEnterEvent(self, event):  # noqa: N802 - Qt override: a text file dragged over the window
        if not self.documents.drag_entered(event):
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event):  # noqa: N802 - Qt override
        if not self.documents.drag_entered(event):
            super().dragMoveEvent(event)

    def dropEvent(self, event):  # noqa: N802 - Qt override: a text file dropped on the window is opened
        if not self.documents.dropped(event):
            super().dropEvent(event)

    # --- results and errors -----------------------------------------------------------------------------
    def _on_result(self, result) -> None:
        """Publish a result; every permanent label in the status bar describes it (and only it)."""
        self.results.set_result(result)
        if self._loading_model is not None and not model_loader.needs_loading(self._loading_model):
            self._end_loading()
        self.backend_label.setText(f"backend: {result.backend.description}")
        n_q, n_k = len(result.query_tokens), len(result.key_tokens)
        if result.kinds is not None:  # encoder-decoder: the source and the decoder's inputs
            source = result.for_kind("encoder").query_tokens
            self.tokens_label.setText(f"{len(source)} source · {len(result.target_tokens)} target tokens")
        else:
            self.tokens_label.setText(f"{n_q} tokens" if not result.cross_attention else f"{n_q} → {n_k} tokens")
        self.time_label.setText(f"{result.elapsed_s * 1000:.1f} ms")
        # The message line belongs to this result: its notices, or nothing (never the previous text's notice).
        self._result_message = " ".join(result.notices)
        if self._result_message:
            self.statusBar().showMessage(self._result_message)
        elif self._message_from_result or self.last_error:
            self.statusBar().clearMessage()
        self._message_from_result = bool(self._result_message)
        self.last_error = ""
        self._update_stale_label()
        if not self._seen_result:
            self._seen_result = True
            self.first_result.emit()

    def show_error(self, message: str) -> None:
        """A refused setting or a failed compute: the views keep the last settings that worked (the stale note)."""
        self.last_error = message
        self.show_file_error(message)
        self._update_stale_label()

    def show_file_error(self, message: str) -> None:
        """A file that could not be read or written (a text, a session, a model, an export): nothing changed, so
        the views still show the current settings and the stale note is not raised."""
        self._end_loading()
        self._message_from_result = False
        self.statusBar().showMessage(f"⚠ {message}", 15_000)
        if self.results.result is None:  # nothing computed yet: the views say why instead of "Computing…"
            self._waiting_message = f"No result yet: {message}"
            for view in self.views.built().values():
                if hasattr(view, "show_waiting"):
                    view.show_waiting(self._waiting_message)

    def _update_stale_label(self) -> None:
        """Say, until the next result or accepted change, that the views keep the last settings that worked.

        The transient message above times out; this note stays (elided; its tooltip has the whole reason).
        """
        stale = bool(self.last_error) and self.results.result is not None
        text = f"⚠ views show the last valid settings — {self.last_error}" if stale else ""
        self.stale_label.setToolTip(text)
        self.stale_label.setText(self.stale_label.fontMetrics().elidedText(text, Qt.ElideRight, STALE_NOTE_PX))
        self.stale_label.setVisible(stale)

    def _on_view_changed(self, view: str) -> None:
        keys = [key for key, _ in VIEWS]
        if view in keys and self.tabs.currentIndex() != keys.index(view):
            self.tabs.setCurrentIndex(keys.index(view))
        if view in self.views:
            self.views[view]  # noqa: B018 - builds the view on screen if it is not built yet

    def _on_tab_changed(self, index: int) -> None:
        if index < len(VIEWS):
            self.views[VIEWS[index][0]]  # noqa: B018 - built before it is shown
            self.session_model.update(view=VIEWS[index][0])

    def _on_view_built(self, name: str, view) -> None:
        """Connect a view built just now as every view is, in the current theme, showing the current result."""
        if name == "next_token":
            view.generate.set_engine(lambda: self.controller.engine)
        if hasattr(view, "prepare_summaries"):  # large summaries a view reads come from the worker
            view.summary_key = name
            view.prepare_summaries = lambda: self.controller.prepare(self.results.result, name)
        for canvas in view.findChildren(pg.GraphicsView):
            style_canvas(canvas)
        if self._waiting_message and self.results.result is None and hasattr(view, "show_waiting"):
            view.show_waiting(self._waiting_message)
        if self.results.result is not None:  # it missed the result's signal (some views sync controls on it):
            self.results.changed.emit()  # sent again; the views built before only redraw if on screen

    # --- actions ----------------------------------------------------------------------------------------
    def _action(self, menu, text: str, shortcut, slot, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip or text)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        files = self.files
        self._action(file_menu, "Open session…", QKeySequence.Open, files.open_session)
        file_menu.addMenu(files.recent_menu)
        self._action(file_menu, "Save session", QKeySequence.Save, files.save)
        self._action(file_menu, "Save session as…", "Ctrl+Shift+S", files.save_as)
        file_menu.addSeparator()
        self._action(file_menu, "Open model folder…", "Ctrl+Shift+O", self.open_model_folder,
                     f"Load a local Hugging Face folder or HF cache entry: {supported_families()}")
        self._action(file_menu, "Open GGUF model…", None, self.open_gguf_file,
                     f"Load a model from a .gguf file (llama.cpp's format; architectures {', '.join(ARCHITECTURES)})")
        file_menu.addSeparator()
        self._action(file_menu, "Export image…", "Ctrl+E", files.export_image,
                     "The current view as PNG (2× or more), SVG or PDF, with a caption")
        self._action(file_menu, "Export session images…", "Ctrl+Shift+E", files.export_session_images,
                     "Every view, every head of the layer, weights, the session and an HTML report into a folder")
        self._action(file_menu, "Export weights…", None, files.export_weights,
                     "The selected head as CSV, or every weight as .npy")
        self._action(file_menu, "Copy view to clipboard", "Ctrl+Shift+C", files.copy_view)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", QKeySequence.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for index, (key, label) in enumerate(VIEWS):
            shortcut = f"Ctrl+{index + 1}" if index < 9 else None  # Ctrl+1 … Ctrl+9: the first nine views
            self._action(view_menu, label, shortcut, lambda _=False, k=key: self.session_model.update(view=k))
        self._action(view_menu, "Run profiler sweep", "Ctrl+R",
                     lambda: (self.session_model.update(view="profiler"), self.views["profiler"].start()))
        view_menu.addSeparator()
        self._action(view_menu, "Next layer", "Alt+Down", lambda: self.step("layer", 1))
        self._action(view_menu, "Previous layer", "Alt+Up", lambda: self.step("layer", -1))
        self._action(view_menu, "Next head", "Alt+Right", lambda: self.step("head", 1))
        self._action(view_menu, "Previous head", "Alt+Left", lambda: self.step("head", -1))
        self._action(view_menu, "Edit the text", "Ctrl+L", self.controls.text.setFocus)
        edit_mask = self.views["heatmap"].edit_mask
        self._action(view_menu, "Edit mask cells", "Ctrl+M", lambda: edit_mask.setChecked(not edit_mask.isChecked()))
        view_menu.addSeparator()
        self._action(view_menu, "Toggle dark theme", "Ctrl+T", self.toggle_theme)
        view_menu.addAction(self.controls_dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", "F1", self.show_shortcuts)
        self._action(help_menu, "About attnstudio", None, self.show_about)

    def step(self, name: str, delta: int) -> None:
        """Alt+arrows: the next layer or head from the one on screen, within the result on screen."""
        result = self.results.result
        if result is None:
            return
        limit = result.num_layers if name == "layer" else result.heads
        self.session_model.update(**{name: max(0, min(limit - 1, getattr(self.results.shown, name) + delta))})

    def open_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Hugging Face model folder")
        if folder:
            self.load_model_folder(folder)

    def open_gguf_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.load_model_folder(path)

    def load_model_folder(self, folder: str) -> None:
        """Switch to the model in ``folder`` (or a .gguf file) once it has loaded, in a thread (the window keeps
        drawing, the status line says what is loading); a bad one changes nothing and says why."""
        self.model_loader.load(folder)

    def _on_model_loaded(self, reference: str) -> None:
        self._end_loading()
        self.session_model.update(model=reference, heads=None, layer=0, head=0)

    def _on_model_failed(self, reference: str, message: str) -> None:
        self.show_file_error(message)  # nothing changed: the model in use stays
        self.warn("Cannot open model", message)

    def warn(self, title: str, message: str) -> QMessageBox:
        """A window-modal warning that does not block the event loop (computes and timers keep running)."""
        return warn(self, title, message)

    def toggle_theme(self) -> None:
        self.theme = "dark" if self.theme == "light" else "light"
        apply_theme(self.theme, self)
        for view in self.views.built().values():  # the others take the theme when they are built
            # result views redraw now if shown, else when shown (one that cannot draw a long result says why)
            refresh = getattr(view, "request_refresh", None) or getattr(view, "refresh", None)
            if refresh is not None:
                refresh()
            view.update()

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{keys}</b></td><td>{what}</td></tr>" for keys, what in SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table cellpadding='3'>{rows}</table>")

    def show_about(self) -> None:
        QMessageBox.about(self, "About attnstudio", f"<b>attnstudio {__version__}</b><br>A desktop playground for "
                          "the attention mechanism of transformers.")

    def closeEvent(self, event):  # noqa: N802 - Qt override
        self.save_settings()
        self.files.mark_closed()
        built = self.views.built()
        for name in ("profiler", "flow"):
            if name in built:
                built[name].shutdown()
        if "next_token" in built:
            built["next_token"].generate.shutdown()
        self.controller.shutdown()
        super().closeEvent(event)
