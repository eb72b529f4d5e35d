"""The profiler's JSON-lines protocol: what the CLI prints is what the app reads back, chunk by chunk."""
from __future__ import annotations

import json
import subprocess
import sys

from attnstudio.core.profile_protocol import (
    Progress,
    ProgressDecoder,
    profile_arguments,
    progress_line,
    result_line,
)
from attnstudio.core.profiling import ProfileConfig, ProfilePoint, ProfileResult

CONFIG = ProfileConfig(lengths=(16, 32), kernels=("naive", "tiled"), heads=1, d_k=8, repeats=1, window=4).validate()


def test_lines_round_trip_whatever_the_chunks():
    point = ProfilePoint(32, "tiled", "numpy", "ok", 2e-4, 4096, 2048)
    result = ProfileResult(CONFIG, [point])
    stream = ("library chatter\n" + progress_line(1, 4, point) + "\n" + result_line(result) + "\n").encode()
    decoder = ProgressDecoder()
    messages = [message for i in range(0, len(stream), 7) for message in decoder.feed(stream[i:i + 7])]
    assert messages == [Progress(1, 4, point), result]


def test_damaged_messages_are_skipped_not_raised():
    decoder = ProgressDecoder()
    damaged = [json.dumps({"done": 1, "total": 2, "point": {"n": -5}}), json.dumps({"result": {"config": 3}}),
               json.dumps([1, 2]), json.dumps(7), "{not json"]
    assert decoder.feed(("\n".join(damaged) + "\n").encode()) == []


def test_the_cli_speaks_the_protocol_the_app_reads():
    done = subprocess.run([sys.executable, "-m", "attnstudio", *profile_arguments(CONFIG)],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    messages = ProgressDecoder().feed(done.stdout)
    progress, final = messages[:-1], messages[-1]
    assert [(m.done, m.total) for m in progress] == [(i, 4) for i in range(1, 5)]
    assert isinstance(final, ProfileResult) and final.config == CONFIG
    assert final.points == [m.point for m in progress]
