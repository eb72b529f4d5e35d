"""Loads models off the GUI thread, so the window keeps drawing while a GGUF is read or its cache mapped.

Reading SmolLM2 for the first time (dequantizing its GGUF) takes seconds, and even from the warm float32 cache
its tokenizer takes a tenth of a second to build; on the GUI thread either froze the window (573 ms measured
while switching models). Here a daemon thread loads through :data:`load_model_cached` (which reads each model
once, however many threads ask) and the answer comes back as a queued signal.
"""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from attnstudio.models.registry import BUILTIN_MODELS, load_model_cached
from attnstudio.session import SYNTHETIC
from attnstudio.ui.compute_worker import describe_failure


def model_label(reference: str) -> str:
    """How the status line names a model: the menu's label for a built-in one, else the file or folder name."""
    builtin = BUILTIN_MODELS.get(reference)
    if builtin is not None:
        return builtin.label.removeprefix("Built-in: ")
    path = Path(reference).expanduser()
    return path.name if path.exists() and path.name else reference  # a repo id or Ollama name as the user knows it


def needs_loading(reference: str) -> bool:
    """True when ``reference`` is a model that is not loaded yet (computing with it would load it first)."""
    return reference != SYNTHETIC and load_model_cached.loaded(reference) is None


class ModelLoader(QObject):
    """Loads one model at a time in a thread; only the newest request's outcome is reported."""

    started = Signal(str)  # reference
    loaded = Signal(str)  # reference: now in load_model_cached
    failed = Signal(str, str)  # reference, one-line message

    _finished = Signal(int, str, str)  # ticket, reference, message ("" when it loaded): from the thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._tickets = itertools.count(1)
        self._ticket = 0
        self.loading: str | None = None  # the reference being loaded for a request, if any
        self._finished.connect(self._on_finished)

    def load(self, reference: str) -> None:
        """Load ``reference`` in a thread; ``loaded`` or ``failed`` follows (at once when it is loaded already)."""
        self._ticket = ticket = next(self._tickets)
        self.loading = reference
        self.started.emit(reference)
        if load_model_cached.loaded(reference) is not None:
            self._on_finished(ticket, reference, "")
            return
        threading.Thread(target=self._run, args=(ticket, reference), name="attnstudio-load-model",
                         daemon=True).start()

    def _run(self, ticket: int, reference: str) -> None:
        try:
            load_model_cached(reference)
            message = ""
        except BaseException as error:  # noqa: BLE001 - a bad model must never escape as a traceback
            message = describe_failure(error)
            if message.startswith("internal error: "):
                message = f"cannot load the model in {reference}: {message.removeprefix('internal error: ')}"
        try:
            self._finished.emit(ticket, reference, message)
        except RuntimeError:  # the window is gone
            pass

    def _on_finished(self, ticket: int, reference: str, message: str) -> None:
        if ticket != self._ticket:
            return  # a newer request replaced this one
        self.loading = None
        if message:
            self.failed.emit(reference, message)
        else:
            self.loaded.emit(reference)


def preload(reference: str) -> None:
    """Start loading ``reference`` in a thread and return at once (start-up: the window builds meanwhile, and the
    first compute finds the model loaded or waits for this load); a failure is left for that compute to report."""
    if not needs_loading(reference):
        return

    def run() -> None:
        try:
            load_model_cached(reference)
        except BaseException:  # noqa: BLE001, S110 - the compute that needs the model reports the problem
            pass

    threading.Thread(target=run, name="attnstudio-preload-model", daemon=True).start()
