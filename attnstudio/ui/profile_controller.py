"""Runs profiler sweeps in a child process and reports their progress, off the GUI's back.

A sweep runs as ``attnstudio profile --progress-json`` (:mod:`attnstudio.core.profile_protocol`): the
kernels allocate and free arrays of hundreds of MiB, and in this process that would hold the GIL long
enough to stall the GUI; a crash or out-of-memory kill of the child cannot take the app down either.
"""
from __future__ import annotations

import sys

from PySide6.QtCore import QObject, QProcess, Signal

from attnstudio.core.profile_protocol import Progress, ProgressDecoder, profile_arguments
from attnstudio.core.profiling import ProfileConfig, ProfileResult

SHUTDOWN_WAIT_MS = 5000


def profile_command(config: ProfileConfig) -> tuple[str, list[str]]:
    """The child process that runs a sweep: this same program's ``profile`` sub-command."""
    arguments = profile_arguments(config)
    if getattr(sys, "frozen", False):  # the bundled executable is the attnstudio command itself
        return sys.executable, arguments
    return sys.executable, ["-m", "attnstudio", *arguments]


class ProfileController(QObject):
    """Runs one sweep at a time; ``partial`` holds the points measured so far.

    Signals: ``progress(done, total)`` after each point (already appended to ``partial``); ``finished``
    with the whole result, or the partial one marked cancelled; ``failed(reason, partial)`` when the child
    ended without a result (``partial`` keeps what it measured); ``busy_changed(bool)``.
    """

    progress = Signal(int, int)
    finished = Signal(object)  # ProfileResult
    failed = Signal(str, object)  # one line, the partial ProfileResult
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.partial: ProfileResult | None = None
        self.process = QProcess(self)
        self.process.readyReadStandardOutput.connect(self._on_output)
        self.process.finished.connect(self._on_process_finished)
        self.process.errorOccurred.connect(self._on_process_error)
        self._decoder = ProgressDecoder()
        self._cancelled = False
        self._final: ProfileResult | None = None
        self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy

    def start(self, config: ProfileConfig) -> bool:
        """Start a sweep of ``config`` (validated by the caller); False if one is already running."""
        if self._busy:
            return False
        self.partial = ProfileResult(config)
        self._decoder, self._cancelled, self._final = ProgressDecoder(), False, None
        self._set_busy(True)
        program, arguments = profile_command(config)
        self.process.start(program, arguments)
        return True

    def cancel(self) -> None:
        """Stop the sweep; ``finished`` follows with the points measured so far, marked cancelled."""
        if self.process.state() != QProcess.NotRunning:
            self._cancelled = True
            self.process.kill()

    def shutdown(self) -> None:
        """Stop a running sweep (the window is closing): end the child process and wait for it."""
        if self.process.state() != QProcess.NotRunning:
            self._cancelled = True
            self.process.kill()
            self.process.waitForFinished(SHUTDOWN_WAIT_MS)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    def _on_output(self) -> None:
        for message in self._decoder.feed(bytes(self.process.readAllStandardOutput())):
            if isinstance(message, Progress):
                self.partial.points.append(message.point)
                self.progress.emit(message.done, message.total)
            else:
                self._final = message

    def _on_process_finished(self, exit_code: int, _exit_status) -> None:
        if not self._busy:
            return  # a start that failed was reported already
        self._on_output()
        self._set_busy(False)
        if self._final is not None and not self._cancelled:
            self.finished.emit(self._final)
        elif self._cancelled:
            self.partial.cancelled = True
            self.finished.emit(self.partial)
        else:
            error = bytes(self.process.readAllStandardError()).decode(errors="replace").strip().splitlines()
            self.failed.emit(error[-1] if error else f"the profiler process ended with code {exit_code}", self.partial)

    def _on_process_error(self, error) -> None:
        if error == QProcess.FailedToStart and self._busy:
            self._set_busy(False)
            self.failed.emit(f"cannot start the profiler: {self.process.errorString()}", self.partial)
