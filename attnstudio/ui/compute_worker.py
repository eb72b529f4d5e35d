"""Runs the engine off the GUI thread, coalescing rapid edits so no stale work queues up."""
from __future__ import annotations

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from attnstudio.core.backend import is_out_of_memory
from attnstudio.engine import ComputeResult, Engine
from attnstudio.errors import AttnStudioError
from attnstudio.session import Session

COALESCE_MS = 0  # the next event-loop pass: edits that arrive together still merge, and none waits longer


class _Worker(QObject):
    finished = Signal(object)  # ComputeResult, with host copies made
    failed = Signal(str)

    def __init__(self, engine: Engine):
        super().__init__()
        self._engine = engine

    @Slot(object)
    def run(self, session: Session) -> None:
        try:
            result = self._engine.compute(session)
            result.precompute_views()  # host copy, entropies, rollout: the GUI thread only draws
            self.finished.emit(result)
        except AttnStudioError as error:
            self.failed.emit(str(error))
        except Exception as error:  # the app must survive anything a compute throws
            if is_out_of_memory(error):
                self.failed.emit("out of memory: try a shorter text, fewer heads or the CPU backend")
            else:
                self.failed.emit(f"internal error: {type(error).__name__}: {error}")


class ComputeController(QObject):
    """Accepts compute requests at any rate; runs the newest one, one at a time, in a worker thread."""

    result_ready = Signal(object)
    failed = Signal(str)
    busy_changed = Signal(bool)
    _run = Signal(object)

    def __init__(self, engine: Engine | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine or Engine()
        self._thread = QThread()
        self._thread.setObjectName("attnstudio-compute")
        self._worker = _Worker(self.engine)
        self._worker.moveToThread(self._thread)
        self._run.connect(self._worker.run)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()
        self._latest: Session | None = None
        self._in_flight = False
        self._timer = QTimer(self, singleShot=True, interval=COALESCE_MS)
        self._timer.timeout.connect(self._dispatch)
        self.requests = 0
        self.runs = 0

    @property
    def busy(self) -> bool:
        return self._in_flight

    def request(self, session: Session) -> None:
        """Compute ``session`` soon; a newer request before it starts replaces it."""
        self.requests += 1
        self._latest = session
        self._timer.start()

    def _dispatch(self) -> None:
        if self._in_flight or self._latest is None:
            return  # the newest request runs when the current one finishes
        session, self._latest = self._latest, None
        self._in_flight = True
        self.runs += 1
        self.busy_changed.emit(True)
        self._run.emit(session)

    def _settle(self) -> None:
        self._in_flight = False
        if self._latest is not None:
            self._dispatch()
        else:
            self.busy_changed.emit(False)

    def _on_finished(self, result: ComputeResult) -> None:
        self._settle()
        self.result_ready.emit(result)  # shown even if a newer request is running: typing stays live

    def _on_failed(self, message: str) -> None:
        self._settle()
        self.failed.emit(message)

    def shutdown(self) -> None:
        self._timer.stop()
        self._latest = None
        self._thread.quit()
        self._thread.wait(10_000)
