"""The encoder-decoder (T5) part of the control panel: the target text and which attention the views show.

Shown only while the result on screen comes from an encoder-decoder model: the text box above is
then the *source*; the target is what the decoder has produced so far (empty: its start token
alone). The selector picks encoder self-attention, decoder self-attention or cross-attention
(target rows × source columns) for every matrix view, without computing again.
"""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QWidget

from attnstudio.attention_kinds import ATTENTION_KINDS
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel

INPUT_TITLES = ("Input", "Input: source text (encoder)")  # the text box's group, one-text / encoder-decoder
COMBO_MIN_CHARACTERS = 12


class Seq2SeqBox(QGroupBox):
    def __init__(self, session_model: SessionModel, results: ResultModel, source_box: QGroupBox | None = None,
                 parent: QWidget | None = None):
        super().__init__("Encoder-decoder", parent)
        self.session_model, self.results, self.source_box = session_model, results, source_box
        self.target = QLineEdit()
        self.target.setPlaceholderText("empty: the decoder's start token alone")
        self.target.setToolTip("What the decoder has produced so far, fed after its start token (teacher forcing); "
                               "the next-token view predicts what follows it")
        self.target.setClearButtonEnabled(True)
        self.target.setMinimumWidth(60)
        self.target.textChanged.connect(lambda text: self.session_model.update(target_text=text))
        self.kind = QComboBox()
        for kind in ATTENTION_KINDS.values():
            self.kind.addItem(kind.label, kind.key)
        self.kind.setToolTip("Which attention the heatmap, heads, pipeline and lines views show")
        self.kind.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.kind.setMinimumContentsLength(COMBO_MIN_CHARACTERS)
        self.kind.activated.connect(lambda _: self.session_model.update(attention_kind=self.kind.currentData()))
        self.target_tokens = QLabel()
        self.target_tokens.setWordWrap(True)
        self.target_tokens.setTextFormat(Qt.PlainText)  # <pad> is a token, not markup
        self.target_tokens.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.target_tokens.setToolTip("The decoder's inputs: its start token, then the target's tokens")
        form = QFormLayout(self)
        form.addRow("Target", self.target)
        form.addRow("Attention", self.kind)
        form.addRow(self.target_tokens)

        session_model.target_text_changed.connect(self._on_target_text_changed)
        session_model.attention_kind_changed.connect(self._on_attention_kind_changed)
        results.changed.connect(self._on_result_changed)
        self._on_target_text_changed(session_model.session.target_text)
        self._on_attention_kind_changed(session_model.session.attention_kind)
        self.setVisible(False)

    def _on_target_text_changed(self, text: str) -> None:
        if self.target.text() != text:
            with QSignalBlocker(self.target):
                self.target.setText(text)

    def _on_attention_kind_changed(self, kind: str) -> None:
        index = self.kind.findData(kind)
        if index >= 0 and index != self.kind.currentIndex():
            with QSignalBlocker(self.kind):
                self.kind.setCurrentIndex(index)

    def _on_result_changed(self) -> None:
        result = self.results.result
        encoder_decoder = result is not None and result.kinds is not None
        self.setVisible(encoder_decoder)
        if self.source_box is not None:
            self.source_box.setTitle(INPUT_TITLES[encoder_decoder])
        if encoder_decoder:
            tokens = result.target_tokens
            self.target_tokens.setText(f"{len(tokens)} decoder inputs: " + " · ".join(tokens))
