"""Computes attention flow off the GUI thread, one result at a time, with progress and cancel.

Flow solves one max-flow problem per pair of tokens (seconds at 64 tokens), so it never runs with the
forward pass: the view asks for it when it is shown. Each job is a daemon thread with its own cancel
flag; a newer job cancels the older one, whose answers are then dropped (the job id no longer matches).
The flow is cached on the result (``ComputeResult.attention_flow``), so an export waits for a job in
progress rather than repeating it.
"""
from __future__ import annotations

import itertools
import threading

from PySide6.QtCore import QObject, Signal

from attnstudio.core.flow import FlowCancelled
from attnstudio.engine import ComputeResult
from attnstudio.ui.compute_worker import describe_failure


class _Relay(QObject):
    """Lives in the GUI thread; the job's thread emits through it (queued across threads)."""

    progress = Signal(int, int, int)  # job, output tokens done, output tokens
    finished = Signal(int, object)  # job, (n, n) flow
    failed = Signal(int, str)  # job, one line


class FlowController(QObject):
    """Runs ``result.attention_flow()`` in a worker thread; the newest request wins."""

    progress = Signal(object, int, int)  # result, output tokens done, output tokens
    flow_ready = Signal(object)  # the result whose flow is now cached
    failed = Signal(object, str)  # result, why
    cancelled = Signal(object)  # result

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._relay.finished.connect(self._on_finished)
        self._relay.failed.connect(self._on_failed)
        self._jobs = itertools.count(1)
        self._job = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.result: ComputeResult | None = None  # the result the job in flight computes

    @property
    def busy(self) -> bool:
        return self._stop is not None

    def start(self, result: ComputeResult) -> None:
        """Compute ``result``'s flow (cancelling any other job); a result whose flow is cached reports at once."""
        if self.busy and self.result is result:
            return
        self.cancel(quiet=True)
        if result.flow_ready():
            self.flow_ready.emit(result)
            return
        self.result, self._job, self._stop = result, next(self._jobs), threading.Event()
        self._thread = threading.Thread(target=_run, args=(result, self._job, self._stop, self._relay),
                                        name="attnstudio-flow", daemon=True)
        self._thread.start()

    def cancel(self, *, quiet: bool = False) -> None:
        """Stop the job in flight (its thread ends at its next max-flow problem); ``cancelled`` says so."""
        if self._stop is None:
            return
        self._stop.set()
        result, self._stop, self._job = self.result, None, 0
        if not quiet:
            self.cancelled.emit(result)

    def wait(self, timeout_s: float = 60.0) -> None:
        """Block until the thread of the latest job has ended (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def shutdown(self) -> None:
        self.cancel(quiet=True)
        self.wait(5.0)

    def _current(self, job: int) -> bool:
        return job == self._job and self._stop is not None

    def _on_progress(self, job: int, done: int, total: int) -> None:
        if self._current(job):
            self.progress.emit(self.result, done, total)

    def _on_finished(self, job: int, _flow) -> None:
        if self._current(job):
            result, self._stop = self.result, None
            self.flow_ready.emit(result)

    def _on_failed(self, job: int, message: str) -> None:
        if self._current(job):
            result, self._stop = self.result, None
            self.failed.emit(result, message)


def _run(result: ComputeResult, job: int, stop: threading.Event, relay: _Relay) -> None:
    def progress(done: int, total: int) -> None:
        _emit(relay.progress, job, done, total)

    try:
        flow = result.attention_flow(progress=progress, cancelled=stop.is_set)
    except FlowCancelled:
        return  # the controller already moved on
    except BaseException as error:  # noqa: BLE001 - a failed flow must not take the app down
        _emit(relay.failed, job, describe_failure(error))
        return
    _emit(relay.finished, job, flow)


def _emit(signal, *payload) -> None:
    try:
        signal.emit(*payload)
    except RuntimeError:  # the view (and its relay) is gone: nobody is waiting any more
        pass
