"""Runs the engine off the GUI thread, coalescing rapid edits so no stale work queues up.

The worker is a daemon thread that survives anything a compute raises (a tokenizer's Rust panic is a
BaseException, not an Exception). A compute that runs longer than :data:`COMPUTE_TIMEOUT_MS` is
abandoned: its thread finishes on its own and its answer is dropped, a fresh thread takes the next
request, and the app stays usable. Daemon threads never hold the app open at exit.
"""
from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal

from attnstudio.core.backend import is_out_of_memory
from attnstudio.core.long_attention import Cancelled
from attnstudio.engine import ComputeResult, Engine
from attnstudio.errors import AttnStudioError
from attnstudio.session import Session

COALESCE_MS = 0  # the next event-loop pass: edits that arrive together still merge, and none waits longer
COMPUTE_TIMEOUT_MS = 30_000  # the largest allowed compute takes about 2 s; 30 s means something is stuck
EXIT_REQUESTS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def describe_failure(error: BaseException) -> str:
    """One line for the status bar about an exception a compute raised."""
    if isinstance(error, AttnStudioError):
        return str(error)
    if isinstance(error, MemoryError) or is_out_of_memory(error):
        return "out of memory: try a shorter text, fewer heads or the CPU backend"
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"internal error: {type(error).__name__}: {text}"


class _Relay(QObject):
    """Lives in the GUI thread; the worker thread emits through it (queued across threads)."""

    finished = Signal(int, object)  # ticket, ComputeResult with host copies made
    failed = Signal(int, str)  # ticket, message
    progress = Signal(int, int, int)  # ticket, layers done, layers (long documents)
    cancelled = Signal(int)  # ticket: the long forward pass stopped on request
    alive = Signal(int)  # ticket: a long forward pass is still working (at most once a second)
    loading = Signal(int)  # ticket: the compute waits for its model to load (not stuck: the watchdog waits too)


@dataclass(frozen=True)
class Prepare:
    """A job for the worker: compute what ``view`` reads from a finished result (then it is published again)."""

    result: ComputeResult
    view: str


def _serve(engine: Engine, jobs: queue.SimpleQueue, relay: _Relay) -> None:
    """The worker thread's loop: one (ticket, session or Prepare) at a time until it receives None."""
    while True:
        job = jobs.get()
        if job is None:
            return
        ticket, work, stop = job
        try:
            if isinstance(work, Prepare):
                work.result.precompute_views(work.view)
                result = work.result
            else:
                # A first load (a GGUF dequantized on a busy machine: 15 s and more) is not a stuck compute: the
                # watchdog pauses while the model loads and counts the compute's own time from when it is ready.
                _emit(relay.loading, None, ticket)
                engine.model(work)
                _emit(relay.alive, None, ticket)
                result = engine.compute(work, cancelled=_heartbeat(stop, relay, ticket),
                                        progress=lambda done, total, t=ticket: _emit(relay.progress, (done, total), t))
                result.precompute_views(work.view)  # what the view on screen reads: the GUI thread only draws
            outcome = (relay.finished, result)
        except Cancelled:
            outcome = (relay.cancelled, None)
        except BaseException as error:  # noqa: BLE001 - the app must survive anything a compute throws
            outcome = (relay.failed, describe_failure(error))
            if isinstance(error, EXIT_REQUESTS):
                _emit(*outcome, ticket)
                return  # the controller starts a fresh thread for the next request
        if not _emit(*outcome, ticket):
            return


def _heartbeat(stop: threading.Event, relay: _Relay, ticket: int):
    """The ``cancelled()`` a long pass polls between row blocks; it also tells the GUI, once a second, that the
    pass is alive (a layer of 8,192 tokens can take longer than the watchdog allows a whole compute)."""
    last = [time.monotonic()]

    def cancelled() -> bool:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            _emit(relay.alive, None, ticket)
        return stop.is_set()
    return cancelled


def _emit(signal, payload, ticket: int) -> bool:
    try:
        if payload is None:
            signal.emit(ticket)
        elif isinstance(payload, tuple):
            signal.emit(ticket, *payload)
        else:
            signal.emit(ticket, payload)
    except RuntimeError:  # the window (and its relay) is gone: nobody is waiting any more
        return False
    return True


GUI_SWITCH_INTERVAL_S = 0.001


class ComputeController(QObject):
    """Accepts compute requests at any rate; runs the newest one, one at a time, in a worker thread."""

    result_ready = Signal(object)
    failed = Signal(str)
    busy_changed = Signal(bool)
    progress = Signal(int, int)  # layers done, layers: a long document's forward pass
    cancelled = Signal()  # the user stopped a long forward pass; the views keep the last result

    def __init__(self, engine: Engine | None = None, parent: QObject | None = None,
                 timeout_ms: int = COMPUTE_TIMEOUT_MS):
        super().__init__(parent)
        self.engine = engine or Engine()
        self._relay = _Relay(self)
        self._relay.finished.connect(self._on_finished)
        self._relay.failed.connect(self._on_failed)
        self._relay.progress.connect(self._on_progress)
        self._relay.cancelled.connect(self._on_cancelled)
        self._relay.alive.connect(lambda ticket: self._watchdog.start() if ticket == self._ticket and self._in_flight
                                  else None)
        self._relay.loading.connect(lambda ticket: self._watchdog.stop() if ticket == self._ticket and self._in_flight
                                    else None)
        self._stop = threading.Event()  # set: the compute in flight stops at its next row block (long passes)
        self._user_stopped = False
        self._reporting = False  # the compute in flight reports progress (a long pass): a newer request stops it
        self._tickets = itertools.count(1)
        self._ticket = 0  # the ticket of the compute in flight; answers to older tickets are dropped
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = self._start_thread()
        self._latest: Session | None = None
        self._in_flight = False
        self._timer = QTimer(self, singleShot=True, interval=COALESCE_MS)
        self._timer.timeout.connect(self._dispatch)
        self._watchdog = QTimer(self, singleShot=True, interval=timeout_ms)
        self._watchdog.timeout.connect(self.abandon)
        self.requests = 0
        self.runs = 0
        self.abandoned = 0

    def _start_thread(self) -> threading.Thread:
        # The GUI thread takes the GIL back from the worker (and a long pass's attention threads) for every Python
        # callback and PySide call; a waiting thread gets it after the holder's switch interval, 5 ms by default,
        # and with three threads asking it can lose several rounds. 1 ms: the longest event-loop gap of an
        # 8,192-token SmolLM2 pass was 76, 105 and 73 ms against 137, 98 and 111 ms at 5 ms (alternating runs).
        sys.setswitchinterval(min(sys.getswitchinterval(), GUI_SWITCH_INTERVAL_S))
        self._jobs = queue.SimpleQueue()
        thread = threading.Thread(target=_serve, args=(self.engine, self._jobs, self._relay),
                                  name="attnstudio-compute", daemon=True)
        thread.start()
        return thread

    @property
    def busy(self) -> bool:
        return self._in_flight

    def request(self, session: Session) -> None:
        """Compute ``session`` soon; a newer request before it starts replaces it."""
        self.requests += 1
        self._latest = session
        if self._in_flight and self._reporting:  # a long pass would hold the new text back for a minute
            self._stop.set()
        self._timer.start()

    def stop(self) -> None:
        """Stop the long forward pass in flight (the views keep the last result)."""
        if self._in_flight:
            self._user_stopped = True
            self._latest = None
            self._stop.set()

    def prepare(self, result: ComputeResult, view: str) -> None:
        """Compute what ``view`` reads from ``result`` (the one on screen) in the worker, then publish it again.

        Nothing happens while a compute is in flight or waiting: it computes what the view on screen reads.
        """
        if self._in_flight or self._latest is not None or result is None:
            return
        self._latest = Prepare(result, view)
        self._timer.start()

    def _dispatch(self) -> None:
        if self._in_flight or self._latest is None:
            return  # the newest request runs when the current one finishes
        if not self._thread.is_alive():  # it ended on an exit request: a fresh one takes over
            self._thread = self._start_thread()
        session, self._latest = self._latest, None
        self._in_flight = True
        self._ticket = next(self._tickets)
        self.runs += 0 if isinstance(session, Prepare) else 1
        self.busy_changed.emit(True)
        self._watchdog.start()
        self._stop = threading.Event()
        self._user_stopped = self._reporting = False
        self._jobs.put((self._ticket, session, self._stop))

    def abandon(self) -> None:
        """Give up on the compute in flight: its answer will be dropped and a fresh thread runs the next one."""
        if not self._in_flight:
            return
        self.abandoned += 1
        self._jobs.put(None)  # the old thread ends once its compute returns
        self._thread = self._start_thread()
        seconds = self._watchdog.interval() / 1000
        self._on_failed(self._ticket, f"the compute took longer than {seconds:g} s and was abandoned; "
                                      f"try a shorter text or a smaller model")

    def _settle(self) -> None:
        self._watchdog.stop()
        self._in_flight = False
        if self._latest is not None:
            self._dispatch()
        else:
            self.busy_changed.emit(False)

    def _on_finished(self, ticket: int, result: ComputeResult) -> None:
        if ticket != self._ticket or not self._in_flight:
            return  # an abandoned compute finished after all: too late
        self._settle()
        self.result_ready.emit(result)  # shown even if a newer request is running: typing stays live

    def _on_progress(self, ticket: int, done: int, total: int) -> None:
        if ticket != self._ticket or not self._in_flight:
            return
        self._reporting = True
        self._watchdog.start()  # a long pass is alive while it reports: the timeout counts from the last layer
        self.progress.emit(done, total)

    def _on_cancelled(self, ticket: int) -> None:
        if ticket != self._ticket or not self._in_flight:
            return
        by_user = self._user_stopped
        self._settle()
        if by_user:
            self.cancelled.emit()

    def _on_failed(self, ticket: int, message: str) -> None:
        if ticket != self._ticket or not self._in_flight:
            return
        self._settle()
        self.failed.emit(message)

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop taking requests and let the worker finish (a stuck one is left to end with the process)."""
        self._timer.stop()
        self._watchdog.stop()
        self._latest = None
        self._in_flight = False
        self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(wait_s)
