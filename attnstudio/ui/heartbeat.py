"""How long the event loop was kept from running: a timer that should tick every few milliseconds, and the
longest gap it saw between ticks (a gap is a stall the user sees: no repaint, no key handled, nothing).

The self-test reports it for the start-up, the launch benchmark for a model switch, and the tests check a model
loads while it keeps ticking.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer

INTERVAL_MS = 5


class Heartbeat(QObject):
    """A precise ``interval_ms`` timer on the calling thread's event loop; ``longest_gap_ms`` is the largest
    time between two ticks (or from ``start`` to the first tick): a loop that never stalls shows about
    ``interval_ms``."""

    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self._timer = QTimer(self, interval=interval_ms, timerType=Qt.PreciseTimer)
        self._timer.timeout.connect(self._on_tick)
        self._last: float | None = None
        self.ticks = 0
        self.longest_gap_ms = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.ticks = 0
        self.longest_gap_ms = 0.0
        self._timer.start()

    def stop(self) -> float:
        """Stop ticking; the longest gap, including the one still open now."""
        if self._timer.isActive():
            self._on_tick()
            self.ticks -= 1
            self._timer.stop()
        return self.longest_gap_ms

    def _on_tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.longest_gap_ms = max(self.longest_gap_ms, (now - self._last) * 1000)
        self._last = now
        self.ticks += 1
