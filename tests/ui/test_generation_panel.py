"""The next-token panel's Generate N: greedy appends the argmax chain step by step, Stop stops, the bars follow the
sampling temperature."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF

from attnstudio.core.families import family_of
from attnstudio.core.generation import sampling_probabilities
from attnstudio.session import Session
from attnstudio.ui.views.next_token import BAR_COLOUR
from tests.ui.conftest import wait_for_result
from tests.ui.test_main_window import pixels

TINY = str(Path(__file__).resolve().parent.parent / "data" / "tiny-llama")
TEXT = "The cat sat on the mat"


def decoder_window(make_window):
    window = make_window(Session(text=TEXT, model=TINY, backend="numpy"))
    window.session_model.update(view="next_token")
    return window, window.views["next_token"]


def test_generate_appends_the_greedy_chain_step_by_step(make_window, qtbot):
    window, view = decoder_window(make_window)
    model = window.controller.engine.model(window.session_model.session)
    ids = list(model.tokenizer.encode(TEXT).ids)
    family = family_of(model.parameters)
    for _ in range(5):
        ids.append(int(np.argmax(family.forward(model.parameters, np.asarray(ids)).next_logits)))
    texts = []
    window.session_model.text_changed.connect(texts.append)
    controls = view.generate
    controls.steps.setValue(5)
    controls.mode.setCurrentText("greedy")
    controls.generate_button.click()
    assert controls.running and controls.stop_button.isEnabled() and not controls.generate_button.isEnabled()
    qtbot.waitUntil(lambda: not controls.running, timeout=60_000)
    assert controls.outcome == "done"
    expected = TEXT + model.tokenizer.decode(ids[-5:])
    assert window.session_model.session.text == expected
    assert len(texts) == 5 and texts[-1] == expected  # one step at a time
    assert not controls.stop_button.isEnabled() and controls.generate_button.isEnabled()
    wait_for_result(qtbot, window, lambda r: r.session.text == expected, timeout=60_000)


def test_stop_ends_a_long_generation(make_window, qtbot):
    window = make_window(Session(text=TEXT, model="smollm2", backend="numpy"))  # 8192 positions: room for 400
    window.session_model.update(view="next_token")
    view = window.views["next_token"]
    controls = view.generate
    controls.steps.setValue(400)
    controls.mode.setCurrentText("sample")
    controls.generate_button.click()
    qtbot.waitUntil(lambda: controls.progress.value() >= 1, timeout=60_000)
    assert controls.progress.isVisible() and controls.progress.maximum() == 400
    controls.stop_button.click()
    qtbot.waitUntil(lambda: not controls.running, timeout=60_000)
    assert controls.outcome == "stopped" and not controls.progress.isVisible()
    assert TEXT != window.session_model.session.text and window.session_model.session.text.startswith(TEXT)
    assert 1 <= controls.progress.value() < 400


def test_the_bars_and_title_follow_the_sampling_temperature(make_window, qtbot):
    window, view = decoder_window(make_window)
    result = window.results.result

    def bar_widths():
        image = pixels(view.canvas)
        bar = np.all(np.abs(image.astype(int) - np.array(BAR_COLOUR[::-1])) <= 3, axis=-1)
        rows = []
        for row in range(3):
            point = view.canvas.mapFromScene(view.plot.vb.mapViewToScene(QPointF(0, row)))
            rows.append(max(int(bar[point.y() + offset].sum()) for offset in range(-3, 4)))  # past the tick mark
        return rows

    view.generate.temperature.setValue(3.0)
    qtbot.waitUntil(lambda: "(T = 3)" in view.plot.titleLabel.text)
    hot = sampling_probabilities(result.forward.next_logits, 3.0)[[c.token_id for c in result.next_tokens[:2]]]
    widths = bar_widths()
    assert abs(widths[1] / widths[0] - hot[1] / hot[0]) < 0.03, (widths, hot)
    view.generate.temperature.setValue(0.5)
    qtbot.waitUntil(lambda: "(T = 0.5)" in view.plot.titleLabel.text)
    cold = sampling_probabilities(result.forward.next_logits, 0.5)[[c.token_id for c in result.next_tokens[:2]]]
    widths = bar_widths()
    assert abs(widths[1] / widths[0] - cold[1] / cold[0]) < 0.03, (widths, cold)
    assert cold[1] / cold[0] < hot[1] / hot[0]
