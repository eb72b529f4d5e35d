"""Models load off the GUI thread: the window keeps processing events and says what is loading.

Each test holds the load in its thread on an Event, so whether the GUI thread keeps running is seen directly
(timer ticks while the load is held), not inferred from timings.
"""
from __future__ import annotations

import threading

import pytest

from attnstudio import engine
from attnstudio.models import registry
from attnstudio.models.registry import load_model_cached
from attnstudio.session import Session
from attnstudio.ui.heartbeat import Heartbeat
from tests.core.tiny_gguf import HEADS, LAYERS, write_tiny_llama
from tests.ui.conftest import open_model, wait_for_result

HOLD_S = 20  # the longest a held load waits for the test (a load on the GUI thread would deadlock without it)


class HeldLoads:
    """registry.load_model, held until release(): records which thread each load ran on."""

    def __init__(self, monkeypatch, substitute: dict[str, str] | None = None):
        self.entered, self.released = threading.Event(), threading.Event()
        self.threads: list[threading.Thread] = []
        self._load = registry.load_model
        self._substitute = substitute or {}
        monkeypatch.setattr(registry, "load_model", self)

    def __call__(self, reference=None):
        self.threads.append(threading.current_thread())
        self.entered.set()
        self.released.wait(HOLD_S)
        return self._load(self._substitute.get(reference, reference))

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path)
    monkeypatch.setattr(engine, "_MODEL_HEADS", {})  # head counts learnt here (the tiny file as SmolLM2) stay here
    load_model_cached.cache_clear()
    yield path
    load_model_cached.cache_clear()


def test_open_gguf_loads_in_a_thread_while_the_window_keeps_running_and_says_so(make_window, qtbot, tiny,
                                                                                  monkeypatch):
    window = make_window()
    held = HeldLoads(monkeypatch)
    heartbeat = Heartbeat()
    heartbeat.start()
    window.load_model_folder(str(tiny))  # returns at once: the load waits in its thread
    qtbot.waitUntil(held.entered.is_set, timeout=HOLD_S * 1000)
    ticks = heartbeat.ticks
    qtbot.waitUntil(lambda: heartbeat.ticks >= ticks + 5)  # the GUI thread's timer runs while the load is held
    assert held.threads[0] is not threading.main_thread()
    assert window.statusBar().currentMessage() == "Loading tiny.gguf…"
    assert window.busy.isVisible() and window.busy.toolTip() == "Loading tiny.gguf…"
    assert window.session_model.session.model == "minilm"  # nothing changes until the model has loaded
    assert window.results.result.model_name == "minilm"  # the last result stays on screen, usable
    window.session_model.update(layer=2)  # and the controls still work
    assert window.results.shown.layer == 2
    held.release()
    wait_for_result(qtbot, window, lambda r: r.model_name == "tiny")
    heartbeat.stop()
    assert window.session_model.session.model == str(tiny)
    assert (window.results.result.num_layers, window.results.result.heads) == (LAYERS, HEADS)
    assert "Loading" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.busy.isVisible())


def test_a_built_in_model_chosen_from_the_menu_loads_in_the_worker_and_the_status_names_it(make_window, qtbot,
                                                                                            tiny, monkeypatch):
    window = make_window()
    held = HeldLoads(monkeypatch, substitute={"smollm2": str(tiny)})  # the tiny file stands in for SmolLM2
    heartbeat = Heartbeat()
    heartbeat.start()
    combo = window.controls.model
    combo.setCurrentIndex(combo.findData("smollm2"))
    combo.activated.emit(combo.findData("smollm2"))
    qtbot.waitUntil(held.entered.is_set, timeout=HOLD_S * 1000)
    ticks = heartbeat.ticks
    qtbot.waitUntil(lambda: heartbeat.ticks >= ticks + 5)
    assert held.threads[0] is not threading.main_thread()
    assert window.statusBar().currentMessage() == "Loading SmolLM2-135M (decoder)…"
    assert window.busy.isVisible()
    assert not window.controls.heads.isEnabled() and window.controls.heads.count() == 0  # not known yet: not guessed
    held.release()
    wait_for_result(qtbot, window, lambda r: r.session.model == "smollm2")
    heartbeat.stop()
    assert window.statusBar().currentMessage() == ""
    assert window.controls.heads.isEnabled() and window.controls.heads.currentData() == HEADS


def test_start_up_shows_the_window_saying_what_loads_before_the_model_is_ready(qtbot, settings, tiny, monkeypatch):
    from attnstudio.ui.main_window import MainWindow  # noqa: PLC0415

    held = HeldLoads(monkeypatch)
    window = MainWindow(Session(model=str(tiny), backend="numpy"), settings=settings, restore=False)
    qtbot.addWidget(window)
    window.resize(1024, 700)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(held.entered.is_set, timeout=HOLD_S * 1000)  # preloading started while the window was built
    heartbeat = Heartbeat()
    heartbeat.start()
    qtbot.waitUntil(lambda: heartbeat.ticks >= 5)
    assert held.threads[0] is not threading.main_thread()
    heatmap = window.views["heatmap"]
    assert window.statusBar().currentMessage() == "Loading tiny.gguf…"
    assert heatmap.waiting.isVisible() and heatmap.waiting.text() == "Loading tiny.gguf…"
    shot = heatmap.grab().toImage()  # the sheet is drawn: its text is on screen, not only in the label
    assert len({shot.pixel(x, shot.height() // 2) for x in range(0, shot.width(), 2)}) > 1
    held.release()
    wait_for_result(qtbot, window, lambda r: r.model_name == "tiny")
    assert not heatmap.waiting.isVisible()
    window.controller.shutdown()


def test_a_model_that_fails_to_load_says_why_and_the_loading_line_goes(make_window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    write_tiny_llama(tmp_path / "tiny.gguf")
    broken.write_bytes((tmp_path / "tiny.gguf").read_bytes()[:500])
    window = make_window()
    assert not open_model(qtbot, window, str(broken))
    assert window.statusBar().currentMessage().startswith("⚠ ") and "damaged" in window.statusBar().currentMessage()
    assert not window.busy.isVisible() and window.session_model.session.model == "minilm"


def test_two_threads_asking_for_one_model_load_it_once(tiny, monkeypatch):
    held = HeldLoads(monkeypatch)
    models = []
    askers = [threading.Thread(target=lambda: models.append(load_model_cached(str(tiny)))) for _ in range(2)]
    for asker in askers:
        asker.start()
    assert held.entered.wait(HOLD_S)
    assert load_model_cached.loaded(str(tiny)) is None  # asking whether it is loaded never waits for the load
    held.release()
    for asker in askers:
        asker.join(HOLD_S)
    assert len(held.threads) == 1 and len(models) == 2 and models[0] is models[1]
    assert load_model_cached.loaded(str(tiny)) is models[0]
