"""The next-token panel's "Generate N" row: greedy or seeded sampling, off the GUI thread, with progress and Stop.

Each generated token is appended to the session's text as it comes, so every view follows the generation.
The worker thread runs :func:`attnstudio.core.generation.generate` on the engine's parameters (read only) with
its own prefix cache; the GUI thread only updates the text and the progress bar.
"""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from attnstudio.core.backend import resolve_backend
from attnstudio.core.families import family_of
from attnstudio.core.generation import MAX_STEPS, MAX_TEMPERATURE, MIN_TEMPERATURE, GenerationSettings, generate
from attnstudio.core.kernels import score_scale
from attnstudio.core.masks import build_mask
from attnstudio.errors import AttnStudioError, InvalidSetting
from attnstudio.session import Session
from attnstudio.ui.compute_worker import describe_failure

MODES = {"greedy": True, "sample": False}  # the mode box's choices -> GenerationSettings.greedy


class Generation(QObject):
    """One generation run in a daemon thread; emits each new text and how it ended (queued to the GUI thread)."""

    token_ready = Signal(int, str)  # tokens generated so far, the text with them appended
    ended = Signal(str)  # why it ended: "done", "stopped", a full context, or what went wrong

    def __init__(self, engine, session: Session, settings: GenerationSettings, parent: QObject | None = None):
        super().__init__(parent)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(engine, session, settings.validate()),
                                        name="attnstudio-generate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()

    def _run(self, engine, session: Session, settings: GenerationSettings) -> None:
        try:
            model = engine.model(session)
            backend = resolve_backend(session.backend)
            parameters = engine.parameters(model, backend)
            family = family_of(parameters)
            if session.is_synthetic or not family.has_head:
                raise InvalidSetting(f"{model.name} has no language-model head: generating needs a decoder")
            if family.encoder_decoder:
                raise InvalidSetting(f"{model.name} is an encoder-decoder: click a bar to extend the target instead")
            if session.mask.has("padding"):
                raise InvalidSetting("generating appends tokens one by one: switch the padding mask off first")
            encoded = model.tokenizer.encode(session.text)
            if not len(encoded.ids):
                raise InvalidSetting("the text is empty: type a sentence to continue")
            head_dim = getattr(parameters, "head_dim", None) or parameters.d_model // model.num_heads
            options = {"score": session.score, "seed": session.seed,
                       "scale": score_scale(session.score, head_dim, None) / session.temperature}
            generated: list[int] = []

            def on_token(step: int, token: int) -> None:
                generated.append(token)
                self.token_ready.emit(step + 1, session.text + model.tokenizer.decode(generated))

            _, outcome = generate(family, parameters, encoded.ids, settings, options=options,
                                  mask_for=lambda n: build_mask(session.mask, n, n), ablation=session.ablation or None,
                                  should_stop=self._stop.is_set, on_token=on_token)
        except AttnStudioError as error:
            outcome = str(error)
        except Exception as error:  # noqa: BLE001 - a generation must never take the app down
            outcome = describe_failure(error)
        try:
            self.ended.emit(outcome)
        except RuntimeError:  # the panel is gone
            pass


class GenerateControls(QWidget):
    """Generate [N] tokens, [greedy | sample] at [temperature] with [seed]; Stop; progress."""

    def __init__(self, session_model, engine_of, parent: QWidget | None = None):
        """engine_of: () -> the Engine whose loaded weights the generation uses (the compute worker's)."""
        super().__init__(parent)
        self.session_model, self._engine_of = session_model, engine_of
        self.generation: Generation | None = None
        self._expected_text = ""
        self.outcome = ""  # how the last generation ended
        self.steps = QSpinBox(minimum=1, maximum=MAX_STEPS, value=20)
        self.steps.setToolTip("How many tokens to generate")
        self.mode = QComboBox()
        self.mode.addItems(list(MODES))
        self.mode.setToolTip("greedy: always the most likely token; sample: a draw from the probabilities "
                             "at this temperature, reproducible with the seed")
        self.temperature = QDoubleSpinBox(minimum=MIN_TEMPERATURE, maximum=MAX_TEMPERATURE, value=1.0,
                                          singleStep=0.1, decimals=2)
        self.temperature.setToolTip("Sampling temperature: the bars show softmax(logits / temperature), "
                                    "and sampling draws from them")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.seed.setToolTip("Seed of the sampling draws: the same seed gives the same tokens")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Append the tokens one by one (the views follow each step)")
        self.generate_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.seed.setMaximumWidth(self.seed.fontMetrics().horizontalAdvance("0000000") + 30)  # fits a 1024 window
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(100)
        self.progress.setFormat("%v / %m")
        self.progress.setVisible(False)
        self.mode.currentTextChanged.connect(self._on_mode_changed)
        self._on_mode_changed(self.mode.currentText())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.generate_button, self.steps, QLabel("tokens,"), self.mode, QLabel("T"), self.temperature,
                       QLabel("seed"), self.seed, self.stop_button, self.progress):
            layout.addWidget(widget)
        layout.addStretch(1)

    def set_engine(self, engine_of) -> None:
        """engine_of: () -> the Engine whose loaded weights generation uses (the compute worker's: one copy)."""
        self._engine_of = engine_of

    def settings(self) -> GenerationSettings:
        return GenerationSettings(self.steps.value(), MODES[self.mode.currentText()], self.temperature.value(),
                                  self.seed.value())

    def _on_mode_changed(self, mode: str) -> None:
        self.seed.setEnabled(not MODES[mode])  # greedy draws nothing

    @property
    def running(self) -> bool:
        return self.generation is not None

    def start(self) -> None:
        if self.running:
            return
        engine = self._engine_of()
        if engine is None:
            self.session_model.rejected.emit("generation needs the app's compute engine")
            return
        session = self.session_model.session
        self._expected_text = session.text
        self.outcome = ""
        settings = self.settings()
        self.generation = Generation(engine, session, settings, self)
        self.generation.token_ready.connect(self._on_token)
        self.generation.ended.connect(self._on_ended)
        self.progress.setRange(0, settings.steps)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.generate_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.generation.start()

    def stop(self) -> None:
        if self.generation is not None:
            self.generation.stop()

    def _on_token(self, done: int, text: str) -> None:
        if self.generation is None or self.sender() is not self.generation:
            return
        if self.session_model.session.text != self._expected_text:  # the user edited the text meanwhile
            self.generation.stop()
            return
        self._expected_text = text
        self.progress.setValue(done)
        self.session_model.update(text=text)

    def _on_ended(self, outcome: str) -> None:
        if self.sender() is not self.generation:
            return
        self.generation = None
        self.outcome = outcome
        self.generate_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress.setVisible(False)
        if outcome not in ("done", "stopped"):
            self.session_model.rejected.emit(f"generation ended: {outcome}")

    def shutdown(self, wait_s: float = 5.0) -> None:
        if self.generation is not None:
            self.generation.stop()
            self.generation.wait(wait_s)
