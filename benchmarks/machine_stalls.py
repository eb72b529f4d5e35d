"""When this machine stops: a witness process per CPU, so a benchmark can tell its own stalls from the machine's.

On a shared virtual machine the hypervisor now and then stops the CPUs to run something else (here, under load,
every few seconds for 20-30 ms, sometimes longer, often both CPUs at once); every process freezes together, and the
guest kernel books the time as "steal" in /proc/stat. An event-loop gap measured across such a moment is the
machine's, not the app's.

:class:`MachineStalls` starts one witness process per CPU, pinned to it and, where allowed, real-time (SCHED_FIFO:
no ordinary thread of the app can keep it from running). Each sleeps 5 ms at a time and records every round that
took more than 2 ms longer as a stall [when it was due, when it ran] (late to wake, or stopped while it ran), with
the steal its CPU was booked meanwhile.
:meth:`MachineStalls.stopped_ms` gives how much of an interval every CPU was stopped, so a benchmark can report a
stall with and without the machine's part. Run as a script, this file is one witness: ``machine_stalls.py CPU OUT``
polls until its standard input closes, then writes JSON.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLL_S = 0.005
LATE_S = 0.002  # a wake-up this much after it was due is a stall
JIFFY_MS = 10.0  # /proc/stat counts in USER_HZ (100 per second on Linux)
STAT = Path("/proc/stat")


def cpu_steal(cpu: int) -> int | None:
    """Steal jiffies booked to ``cpu``, or None where there is no /proc/stat."""
    try:
        for line in STAT.read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                return int(line.split()[8])
    except OSError:
        pass
    return None


def witness(cpu: int, out: Path) -> None:
    """Pinned to ``cpu`` (real-time where allowed), poll until standard input closes; write
    {"cpu", "realtime", "stalls": [[due, ran]], "steal_ms": [[time, ms]]} (CLOCK_MONOTONIC seconds)."""
    realtime = False
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
            realtime = True
        except (PermissionError, OSError):  # an ordinary user: the witness runs at normal priority
            pass
    stalls, steal = [], []
    booked = cpu_steal(cpu)
    last = time.monotonic()
    while not select.select([sys.stdin], [], [], POLL_S)[0]:
        ran = time.monotonic()
        if ran - last > POLL_S + LATE_S:  # late, or stopped while it ran (its own work takes microseconds)
            stalls.append([last + POLL_S, ran])
        now_booked = cpu_steal(cpu)
        if now_booked is not None and booked is not None and now_booked != booked:
            steal.append([ran, (now_booked - booked) * JIFFY_MS])
        booked, last = now_booked, ran
    out.write_text(json.dumps({"cpu": cpu, "realtime": realtime, "stalls": stalls, "steal_ms": steal}))


class MachineStalls:
    """``stalls = MachineStalls().start()`` ... ``stalls.stop()``, then ``stalls.stopped_ms(start, end)`` for an
    interval in CLOCK_MONOTONIC seconds (``time.monotonic()``)."""

    def __init__(self):
        self.witnesses: list[dict] = []

    def start(self) -> MachineStalls:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._folder = tempfile.TemporaryDirectory()
        outs = [Path(self._folder.name) / f"cpu{cpu}.json" for cpu in cpus]
        self._runs = [(out, subprocess.Popen([sys.executable, __file__, str(cpu), str(out)], stdin=subprocess.PIPE))
                      for cpu, out in zip(cpus, outs, strict=True)]
        return self

    def stop(self) -> None:
        for out, process in self._runs:
            process.stdin.close()
            process.wait(timeout=30)
            if out.exists():
                self.witnesses.append(json.loads(out.read_text()))
        self._folder.cleanup()

    @property
    def available(self) -> bool:
        return bool(self.witnesses)

    @property
    def realtime(self) -> bool:
        return self.available and all(w["realtime"] for w in self.witnesses)

    def stopped_ms(self, start: float, end: float) -> float:
        """How long, within [start, end], every CPU was stopped (the least over the CPUs' witnesses)."""
        def overlap(witness: dict) -> float:
            return sum(max(0.0, min(end, ran) - max(start, due)) for due, ran in witness["stalls"]) * 1e3
        return min((overlap(w) for w in self.witnesses), default=0.0)

    def steal_ms(self, start: float, end: float) -> list[float]:
        """Steal booked to each CPU from ``start`` until 20 ms after ``end`` (booked at the CPU's next tick)."""
        return [sum(ms for at, ms in w["steal_ms"] if start < at <= end + 0.02) for w in self.witnesses]

    def total_stopped_ms(self) -> list[float]:
        return [sum(ran - due for due, ran in w["stalls"]) * 1e3 for w in self.witnesses]


if __name__ == "__main__":
    witness(int(sys.argv[1]), Path(sys.argv[2]))
