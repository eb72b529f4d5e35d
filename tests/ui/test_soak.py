"""A scripted session for ten minutes: typing, models, heads, masks, views, exports. Run with `make soak`.

Passes when resident memory grows by less than 50 MiB after the warm-up, and no widgets or threads leak.
ATTNSTUDIO_SOAK_SECONDS shortens it for a quick look.
"""
from __future__ import annotations

import gc
import os
import time
from collections import Counter

import pytest
from PySide6.QtWidgets import QApplication

from attnstudio.core.masks import MaskSpec
from attnstudio.session import Session
from tests.ui.conftest import wait_for_result

pytestmark = pytest.mark.soak
SECONDS = float(os.environ.get("ATTNSTUDIO_SOAK_SECONDS", "600"))


def process_status(field: str) -> int:
    """A number from /proc/self/status (VmRSS in KiB, Threads as a count: every OS thread, Qt's included)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def widget_counts() -> Counter:
    return Counter(type(widget).__name__ for widget in QApplication.allWidgets())


def resident_mib() -> float:
    return process_status("VmRSS") / 1024


def settle(window, qtbot, text: str) -> None:
    """The same state before both counts (views build their widgets for what they show), all work done."""
    window.session_model.update(model="minilm", heads=None, mask=MaskSpec(), view="heads", layer=0, head=0, text=text)
    wait_for_result(qtbot, window, lambda r: text.split(maxsplit=1)[0] in r.query_tokens,
                    timeout=30_000)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=30_000)
    qtbot.wait(200)
    gc.collect()


def test_ten_minute_session(make_window, qtbot, tmp_path):
    window = make_window(Session(backend="numpy"))
    sentences = ["The cat sat on the mat because it was tired.", "I deposited the money into my bank account.",
                 "We had a picnic on the grassy river bank.", "Attention is all you need, they said. " * 6]
    steps = [
        lambda i: window.controls.text.setPlainText(sentences[i % len(sentences)]),
        lambda i: qtbot.keyClicks(window.controls.text, " and more"),
        lambda i: window.session_model.update(model="synthetic" if i % 2 else "minilm", heads=4 if i % 2 else None),
        lambda i: window.session_model.update(heads=[1, 2, 3, 6, 12][i % 5])
        if window.session_model.session.model == "minilm" else None,
        lambda i: window.session_model.update(mask=[MaskSpec(), MaskSpec("causal"), MaskSpec("window", width=2),
                                                    MaskSpec("padding")][i % 4]),
        lambda i: window.session_model.update(view=["heatmap", "heads", "pipeline", "lines", "rollout"][i % 5]),
        lambda i: window.session_model.update(layer=i % 6, head=i % 12),
        lambda i: window.files.export_image_to(tmp_path / f"view{i % 3}.png"),
        lambda i: window.files.save_to(tmp_path / "soak.attnsession"),
    ]
    iterations, started, baseline, widgets, threads = 0, time.perf_counter(), None, None, None
    while time.perf_counter() - started < SECONDS:
        steps[iterations % len(steps)](iterations)
        qtbot.wait(20)
        iterations += 1
        if baseline is None and time.perf_counter() - started > min(60.0, SECONDS / 5):
            settle(window, qtbot, "first river")
            baseline, widgets, threads = resident_mib(), widget_counts(), process_status("Threads")
    settle(window, qtbot, "second river")
    growth = resident_mib() - baseline
    now = widget_counts()
    print(f"soak: {iterations} steps in {time.perf_counter() - started:.0f} s; resident memory grew {growth:.1f} MiB "
          f"after warm-up; widgets {widgets.total()} -> {now.total()}; threads {threads} -> "
          f"{process_status('Threads')}; computes {window.controller.runs}")
    assert growth < 50
    assert now.total() <= widgets.total() + 5, f"widgets that grew: {dict(now - widgets)}"
    assert process_status("Threads") <= threads
