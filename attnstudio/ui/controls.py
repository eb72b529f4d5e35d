"""The control panel: text, model, layer/head, head count, d_k, score, temperature, mask, backend.

Each control follows its field's signal on the session model (``<field>_changed`` ->
``_on_<field>_changed``) and writes back through ``SessionModel.update``; nothing here computes.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QPalette, QTextOption
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from attnstudio.core.backend import BACKEND_LABELS, cupy_status
from attnstudio.core.scores import SCORES
from attnstudio.engine import valid_head_counts
from attnstudio.errors import AttnStudioError
from attnstudio.limits import LIMITS
from attnstudio.models.registry import BUILTIN_MODELS, is_gguf_reference
from attnstudio.models.sources import discover_models
from attnstudio.presets import text_presets
from attnstudio.session import SYNTHETIC
from attnstudio.ui.display_controls import MaskColourBox
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.seq2seq_controls import Seq2SeqBox
from attnstudio.ui.session_model import SessionModel

PRESETS = text_presets()  # (menu label, text, second text or "")
OPEN_FOLDER = "__open__"
OPEN_GGUF = "__open_gguf__"
TOKEN_LIST_LINES = 4  # the token list never grows taller than this: it scrolls, or folds away
TOKENS_PER_PARAGRAPH = 128  # a longer token list is one paragraph per this many tokens, each with its first index
COMBO_MIN_CHARACTERS = 12  # long item names elide instead of widening the dock
UNKNOWN_WIDTH = "—"  # a pretrained model's d_k / d_model before its first result
# The pair field (a second sentence for cross-attention): (placeholder, tooltip) while a one-text model is shown,
# and while an encoder-decoder's is (its cross-attention runs from the target to the source: no second sentence)
PAIR_HINTS = {False: ("optional: keys and values from this sentence (cross-attention)",
                      "Cross-attention: queries come from the text above, keys and values from here"),
              True: ("not used by an encoder-decoder model",
                     "An encoder-decoder model (T5) takes no second sentence: its cross-attention runs from the "
                     "target (Encoder-decoder box below) to the source text above")}


class TokenList(QPlainTextEdit):
    """The tokens the model sees: read-only plain text (``<pad>`` is text, not markup), selectable, at most
    TOKEN_LIST_LINES tall; it scrolls. A word-wrapped QLabel in a scroll area laid 8,192 tokens out in about
    0.7 s on the GUI thread (a stall as a long document's result arrived); this lays them out in about 50 ms."""

    def __init__(self, text: str):
        super().__init__()
        self.setReadOnly(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setWordWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.viewport().setBackgroundRole(QPalette.Window)  # reads as a caption of the panel, not an input box
        self.document().setDocumentMargin(0)
        self.setMaximumHeight(self.fontMetrics().lineSpacing() * TOKEN_LIST_LINES + 8)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.setPlainText(text)

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name, which callers and tests use
        if text != self.toPlainText():
            self.setPlainText(text)


def token_list_text(tokens: list[str]) -> str:
    """What the token list shows: "N tokens: a · b · …", and past TOKENS_PER_PARAGRAPH tokens one paragraph per
    TOKENS_PER_PARAGRAPH, each opening with its first token's index ("[128] …"), so a token is found by its
    position. The list then lays out only the paragraphs in view: one 8,192-token paragraph took 45 ms of the GUI
    thread as a long document's result arrived, 128-token paragraphs take 1.5 ms."""
    count = len(tokens)
    if count <= TOKENS_PER_PARAGRAPH:
        return f"{count} tokens: " + " · ".join(tokens)
    return f"{count} tokens:\n" + "\n".join(f"[{start}] " + " · ".join(tokens[start:start + TOKENS_PER_PARAGRAPH])
                                            for start in range(0, count, TOKENS_PER_PARAGRAPH))


def _spin(low: int, high: int, tooltip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(int(low), int(high))
    spin.setToolTip(tooltip)
    spin.setKeyboardTracking(False)
    return spin


LONGEST_WORD_TO_WRAP = 500  # Qt's word-boundary wrapping of a 99k-character "word" stalls the GUI for seconds


def _fit_wrap_mode(editor: QPlainTextEdit, text: str) -> None:
    """Wrap at word boundaries, except for text with a huge unbroken run: wrap that anywhere (instant)."""
    longest = max(map(len, text.split()), default=0)
    mode = QTextOption.WrapAnywhere if longest > LONGEST_WORD_TO_WRAP else QTextOption.WrapAtWordBoundaryOrAnywhere
    if editor.wordWrapMode() != mode:
        editor.setWordWrapMode(mode)


class _TextEdit(QPlainTextEdit):
    """A plain-text editor that picks its wrap mode before new text is laid out (layout happens on insert)."""

    def setPlainText(self, text: str) -> None:  # noqa: N802 - Qt override
        _fit_wrap_mode(self, text)
        super().setPlainText(text)

    def insertFromMimeData(self, source) -> None:  # noqa: N802 - Qt override: paste and drop
        if source.hasText():
            _fit_wrap_mode(self, self.toPlainText() + source.text())
        super().insertFromMimeData(source)


def _select_data(combo: QComboBox, data) -> None:
    index = combo.findData(data)
    if index >= 0 and index != combo.currentIndex():
        with QSignalBlocker(combo):
            combo.setCurrentIndex(index)


class ControlPanel(QWidget):
    open_model_folder_requested = Signal()
    open_gguf_requested = Signal()
    found_model_chosen = Signal(str)  # a model found in the Hugging Face cache or the Ollama store

    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results

        self.text = _TextEdit()
        self.text.setPlaceholderText("Type a sentence…")
        self.text.setToolTip("The sentence whose attention you see; every view updates as you type")
        self.text.setMaximumHeight(90)
        self.text.textChanged.connect(self._on_text_typed)
        self.pair = QLineEdit()
        self._pair_refused = None  # the pair field's state: None (not set yet), False (open), True (greyed)
        self.pair.setClearButtonEnabled(True)
        self.pair.textChanged.connect(lambda text: self.session_model.update(pair_text=text))
        self.presets = QComboBox()
        self.presets.addItem("Presets…", None)
        for label, text, pair in PRESETS:
            self.presets.addItem(label, (text, pair))
        self.presets.setToolTip("Classic example sentences")
        self.presets.activated.connect(self._on_preset_chosen)
        self.tokens = TokenList("Computing…")
        self.tokens.setToolTip("The tokens the model sees")
        self.tokens_box = self.tokens  # it scrolls itself
        self.tokens_toggle = QToolButton()
        self.tokens_toggle.setCheckable(True)
        self.tokens_toggle.setChecked(True)
        self.tokens_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.tokens_toggle.setArrowType(Qt.DownArrow)
        self.tokens_toggle.setAutoRaise(True)
        self.tokens_toggle.setText("Tokens")
        self.tokens_toggle.setToolTip("Show or hide the list of tokens")
        self.tokens_toggle.toggled.connect(self._on_tokens_toggled)

        self.model = QComboBox()
        for builtin in BUILTIN_MODELS.values():
            self.model.addItem(builtin.label, builtin.key)
        found_models = discover_models()
        self._found_models = {found.reference for found in found_models}
        for found in found_models:
            self.model.addItem(found.label, found.reference)
            self.model.setItemData(self.model.count() - 1, str(found.path), Qt.ToolTipRole)
        self.model.addItem("Synthetic (seeded random W_Q, W_K, W_V)", SYNTHETIC)
        self.model.addItem("Open model folder…", OPEN_FOLDER)
        self.model.addItem("Open GGUF file…", OPEN_GGUF)
        self.model.setToolTip("A pretrained model (a Hugging Face folder or a GGUF file: encoders, decoders, T5 "
                              "encoder-decoders), or a synthetic one-layer model you shape")
        self.model.activated.connect(self._on_model_chosen)
        self.layer = _spin(1, 1, "Which layer the views show (Alt+Up / Alt+Down)")
        self.layer.valueChanged.connect(lambda v: self.session_model.update(layer=v - 1))
        self.head = _spin(1, 1, "Which head the views show (Alt+Left / Alt+Right)")
        self.head.valueChanged.connect(lambda v: self.session_model.update(head=v - 1))
        self.heads = QComboBox()
        self.heads.setToolTip("Head count. Pretrained: re-splits the model's projections; only the counts that "
                              "divide the model width are offered")
        self.heads.activated.connect(lambda _: self.session_model.update(heads=self.heads.currentData()))
        self.d_k = _spin(LIMITS["d_k"].low, LIMITS["d_k"].high, "Width of each head's queries and keys (synthetic)")
        self.d_k.valueChanged.connect(lambda v: self.session_model.update(d_k=v))
        self.d_model = _spin(LIMITS["d_model"].low, LIMITS["d_model"].high, "Width of the token vectors (synthetic)")
        self.d_model.valueChanged.connect(lambda v: self.session_model.update(d_model=v))
        self.seed = _spin(LIMITS["seed"].low, LIMITS["seed"].high,
                          "Random seed of the synthetic parameters and the additive score")
        self.seed.valueChanged.connect(lambda v: self.session_model.update(seed=v))

        self.score = QComboBox()
        for score in SCORES.values():
            self.score.addItem(score.label, score.name)
        self.score.setToolTip("How a query and a key are compared before the softmax")
        self.score.activated.connect(lambda _: self.session_model.update(score=self.score.currentData()))
        self.temperature = QDoubleSpinBox()
        self.temperature.setDecimals(LIMITS["temperature"].decimals)  # before the range: 0.001 must show
        self.temperature.setRange(LIMITS["temperature"].low, LIMITS["temperature"].high)
        self.temperature.setSingleStep(0.1)
        self.temperature.setKeyboardTracking(False)
        self.temperature.setToolTip("Scores are divided by the temperature: below 1 sharpens, above 1 flattens")
        self.temperature.valueChanged.connect(lambda v: self.session_model.update(temperature=v))
        self.mask_colour = MaskColourBox(session_model)

        self.backend = QComboBox()
        usable, detail = cupy_status()
        for value, label in BACKEND_LABELS.items():
            self.backend.addItem(label if value != "cupy" or not usable else f"CuPy (GPU: {detail})", value)
        if not usable:
            self.backend.model().item(self.backend.findData("cupy")).setEnabled(False)
        self.backend_note = QLabel(f"GPU: {detail}" if usable else f"GPU unavailable: {detail}")
        self.backend_note.setWordWrap(True)
        self.backend.setToolTip("Where attention is computed; Auto takes the GPU when one is usable")
        self.backend.activated.connect(lambda _: self.session_model.update(backend=self.backend.currentData()))

        text_box = QGroupBox("Input")
        form = QFormLayout(text_box)
        form.addRow(self.presets)
        form.addRow(self.text)
        form.addRow("Pair", self.pair)
        form.addRow(self.tokens_toggle)
        form.addRow(self.tokens_box)
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow("Model", self.model)
        form.addRow("Layer", self.layer)
        form.addRow("Head", self.head)
        form.addRow("Heads", self.heads)
        form.addRow("d_k", self.d_k)
        form.addRow("d_model", self.d_model)
        form.addRow("Seed", self.seed)
        attention_box = QGroupBox("Attention")
        form = QFormLayout(attention_box)
        form.addRow("Score", self.score)
        form.addRow("Temperature", self.temperature)
        compute_box = QGroupBox("Compute")
        form = QFormLayout(compute_box)
        form.addRow("Backend", self.backend)
        form.addRow(self.backend_note)
        for combo in (self.presets, self.model, self.heads, self.score, self.mask_colour.color_scale, self.backend):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(COMBO_MIN_CHARACTERS)
        self.pair.setMinimumWidth(60)
        self.text.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.seq2seq = Seq2SeqBox(session_model, results, source_box=text_box)  # T5: the target, which attention
        layout = QVBoxLayout(self)
        for box in (text_box, self.seq2seq, model_box, attention_box, self.mask_colour, compute_box):
            layout.addWidget(box)
        layout.addStretch(1)

        model = session_model
        for signal, handler in ((model.text_changed, self._on_text_changed),
                                (model.pair_text_changed, self._on_pair_text_changed),
                                (model.model_changed, self._on_model_changed),
                                (model.layer_changed, self._on_layer_changed),
                                (model.head_changed, self._on_head_changed),
                                (model.heads_changed, self._on_heads_changed),
                                (model.d_k_changed, self._on_d_k_changed),
                                (model.d_model_changed, self._on_d_model_changed),
                                (model.seed_changed, self._on_seed_changed),
                                (model.score_changed, self._on_score_changed),
                                (model.temperature_changed, self._on_temperature_changed),
                                (model.backend_changed, self._on_backend_changed)):
            signal.connect(handler)
        results.changed.connect(self._on_result_changed)
        session = session_model.session
        self._on_text_changed(session.text)
        self._on_pair_text_changed(session.pair_text)
        self._on_model_changed(session.model)
        self._on_layer_changed(session.layer)
        self._on_heads_changed(session.heads)  # and head
        self._on_d_k_changed(session.d_k)
        self._on_d_model_changed(session.d_model)
        self._on_seed_changed(session.seed)
        self._on_score_changed(session.score)
        self._on_temperature_changed(session.temperature)
        self._on_backend_changed(session.backend)

    # --- session -> widgets ---------------------------------------------------------------------------
    def _set(self, widget, value) -> None:
        if widget.value() != value:
            with QSignalBlocker(widget):
                widget.setValue(value)

    def _on_text_changed(self, text: str) -> None:
        if self.text.toPlainText() != text:
            with QSignalBlocker(self.text):
                self.text.setPlainText(text)

    def _on_pair_text_changed(self, pair_text: str) -> None:
        if self.pair.text() != pair_text:
            with QSignalBlocker(self.pair):
                self.pair.setText(pair_text)
        self._show_pair_state()

    def _show_pair_state(self) -> None:
        """Grey the pair field while an encoder-decoder's result is shown; a pair typed earlier stays clearable
        (the compute refuses it and says so)."""
        result = self.results.result
        refused = result is not None and result.kinds is not None and not self.session_model.session.pair_text
        if refused != self._pair_refused:
            self._pair_refused = refused
            self.pair.setEnabled(not refused)
            placeholder, tooltip = PAIR_HINTS[refused]
            self.pair.setPlaceholderText(placeholder)
            self.pair.setToolTip(tooltip)

    def _on_model_changed(self, model: str) -> None:
        if self.model.findData(model) < 0:
            label = f"File: {Path(model).name}" if is_gguf_reference(model) else f"Folder: {model}"
            self.model.insertItem(self.model.findData(OPEN_FOLDER), label, model)
        _select_data(self.model, model)
        synthetic = model == SYNTHETIC
        for widget in (self.d_k, self.d_model, self.seed):
            widget.setEnabled(synthetic)
        # A pretrained model's widths are read from its first result: until then the greyed boxes show a dash,
        # not the synthetic model's 16 and 64 as if they were the model's own
        for widget in (self.d_k, self.d_model):
            widget.setSpecialValueText("" if synthetic else UNKNOWN_WIDTH)
            if not synthetic and self.results.result is None:
                self._set(widget, widget.minimum())
        session = self.session_model.session
        if synthetic:
            self.d_model.setMaximum(LIMITS["d_model"].high)
            self._on_d_k_changed(session.d_k)
            self._on_d_model_changed(session.d_model)
        self._on_heads_changed(session.heads)

    def _on_layer_changed(self, layer: int) -> None:
        self._set(self.layer, layer + 1)

    def _on_head_changed(self, head: int) -> None:
        self._set(self.head, head + 1)

    def _on_heads_changed(self, heads: int | None) -> None:
        """Offer only the head counts the session's model can take; show the one in use."""
        session = self.session_model.session
        try:
            counts, own = valid_head_counts(session.model)
        except AttnStudioError:
            counts, own = (), None
        shown = [self.heads.itemData(i) for i in range(self.heads.count())]
        if shown != list(counts):
            with QSignalBlocker(self.heads):
                self.heads.clear()
                for count in counts:
                    self.heads.addItem(f"{count} (the model's own)" if count == own else str(count), count)
        self.heads.setEnabled(bool(counts))  # none yet: the model is still loading (filled in with its result)
        _select_data(self.heads, heads or own)
        with QSignalBlocker(self.head):  # the spin shows what it can; the session keeps the user's head
            self.head.setMaximum(heads or own or 1)
        self._on_head_changed(session.head)

    def _on_d_k_changed(self, d_k: int) -> None:
        if self.session_model.session.is_synthetic:  # a pretrained model's own width comes with its result
            self._set(self.d_k, d_k)

    def _on_d_model_changed(self, d_model: int) -> None:
        if self.session_model.session.is_synthetic:
            self._set(self.d_model, d_model)

    def _on_seed_changed(self, seed: int) -> None:
        self._set(self.seed, seed)

    def _on_score_changed(self, score: str) -> None:
        _select_data(self.score, score)

    def _on_temperature_changed(self, temperature: float) -> None:
        self._set(self.temperature, temperature)

    def _on_backend_changed(self, backend: str) -> None:
        _select_data(self.backend, backend)

    def _on_result_changed(self) -> None:
        result = self.results.result
        session = self.session_model.session
        with QSignalBlocker(self.layer):
            self.layer.setMaximum(result.num_layers)
        self._on_layer_changed(session.layer)
        self._on_head_changed(session.head)
        if session.model != SYNTHETIC:  # the greyed boxes show the pretrained model's own widths
            width = int(result.forward.hidden_states[0].shape[-1])
            with QSignalBlocker(self.d_k), QSignalBlocker(self.d_model):
                self.d_k.setValue(result.d_k)
                self.d_model.setMaximum(max(LIMITS["d_model"].high, width))
                self.d_model.setValue(width)
        self._on_heads_changed(session.heads)
        self._show_pair_state()
        tokens = result.for_kind("encoder").query_tokens  # the text box's tokens (an encoder-decoder's source)
        self.tokens.setText(token_list_text(tokens))
        self.tokens_toggle.setText(f"{len(tokens)} tokens")

    def _on_tokens_toggled(self, shown: bool) -> None:
        self.tokens_box.setVisible(shown)
        self.tokens_toggle.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)

    # --- widgets -> session ---------------------------------------------------------------------------
    def _on_text_typed(self) -> None:
        text = self.text.toPlainText()
        _fit_wrap_mode(self.text, text)  # before the next paint lays the text out
        self.session_model.update(text=text)

    def _on_preset_chosen(self, index: int) -> None:
        data = self.presets.itemData(index)
        if data is not None:
            text, pair = data
            self.session_model.update(text=text, pair_text=pair)
        with QSignalBlocker(self.presets):
            self.presets.setCurrentIndex(0)

    def _on_model_chosen(self, index: int) -> None:
        data = self.model.itemData(index)
        if data in (OPEN_FOLDER, OPEN_GGUF):
            _select_data(self.model, self.session_model.session.model)
            (self.open_model_folder_requested if data == OPEN_FOLDER else self.open_gguf_requested).emit()
            return
        # a found model is checked by loading it before it is chosen
        if data in self._found_models and data != self.session_model.session.model:
            _select_data(self.model, self.session_model.session.model)
            self.found_model_chosen.emit(data)
            return
        heads = None if data != SYNTHETIC else (self.session_model.session.heads or 4)
        self.session_model.update(model=data, heads=heads, layer=0, head=0)
