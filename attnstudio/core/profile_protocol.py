"""The JSON-lines protocol between the app's profiler and its child process, in one place.

The app runs a sweep as ``attnstudio profile --progress-json …`` (see :func:`profile_arguments`); the child
prints one line per measured point and the whole result as its last line::

    {"done": 3, "total": 12, "point": {"n": 256, "kernel": "naive", ...}}
    {"result": {"config": {...}, "points": [...], ...}}

The CLI writes these lines with :func:`progress_line` and :func:`result_line`; the app reads them back
with :class:`ProgressDecoder`. Lines that are not JSON (a library printing) are ignored.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from attnstudio.core.profiling import ProfileConfig, ProfilePoint, ProfileResult
from attnstudio.errors import InvalidSetting

PROGRESS_FLAG = "--progress-json"  # the profile sub-command's option that switches this protocol on


def profile_arguments(config: ProfileConfig) -> list[str]:
    """The ``profile`` sub-command's arguments that run ``config`` and report in this protocol."""
    return ["profile", PROGRESS_FLAG, "--n", ",".join(str(n) for n in config.lengths),
            "--kernels", ",".join(config.kernels), "--backend", ",".join(config.backends),
            "--heads", str(config.heads), "--d-k", str(config.d_k), "--dtype", config.dtype,
            "--repeats", str(config.repeats), "--window", str(config.window)]


def progress_line(done: int, total: int, point: ProfilePoint) -> str:
    """The line announcing that ``done`` of ``total`` points are measured, ``point`` the newest."""
    return json.dumps({"done": done, "total": total, "point": asdict(point)})


def result_line(result: ProfileResult) -> str:
    """The last line: the finished sweep."""
    return json.dumps({"result": result.to_json_dict()})


@dataclass
class Progress:
    done: int
    total: int
    point: ProfilePoint


class ProgressDecoder:
    """Turns the child's output, in whatever chunks it arrives, into Progress and ProfileResult messages."""

    def __init__(self):
        self._buffer = b""

    def feed(self, data: bytes) -> list[Progress | ProfileResult]:
        """The messages completed by ``data`` (a partial last line waits for the next chunk)."""
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        messages: list[Progress | ProfileResult] = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing): ignore
            try:
                if "point" in message:
                    messages.append(Progress(int(message["done"]), int(message["total"]),
                                             ProfilePoint(**message["point"]).validate()))
                elif "result" in message:
                    messages.append(ProfileResult.from_json_dict(message["result"]))
            except (InvalidSetting, KeyError, TypeError, ValueError):
                continue  # a damaged message: the sweep ends without its result and says so
        return messages
