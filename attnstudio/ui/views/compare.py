"""Compare two texts: A and B side by side at the same layer and head, B − A where the tokens align,
and one word followed through the layers in both contexts (cosine of its hidden states)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from attnstudio.core.analysis import (
    align_tokens,
    aligned_difference,
    aligned_labels,
    bare_token,
    cosine_similarity,
    find_word,
    is_separator,
    layer_cosines,
)
from attnstudio.core.backend import to_numpy
from attnstudio.presets import comparison_presets
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.matrix import SIGNED_COLORMAP, MatrixPlot
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

PRESETS = comparison_presets()  # name -> (text A, text B, the word to follow)
EDIT_DELAY_MS = 300
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<|endoftext|>"})


def shared_words(tokens_a: list[str], tokens_b: list[str]) -> list[str]:
    """Words (not special tokens or punctuation) that occur in both texts, in A's order."""
    in_b = {bare_token(token).casefold() for token in tokens_b}
    words: list[str] = []
    for token in tokens_a:
        word = bare_token(token)
        if token in SPECIAL_TOKENS or is_separator(token) or word.casefold() not in in_b or word in words:
            continue
        words.append(word)
    return words


class CompareView(ResultView):
    def __init__(self, session_model: SessionModel, results: ResultModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model, self.results = session_model, results
        self.text_b = QLineEdit(session_model.session.compare_text)
        self.text_b.setPlaceholderText("Text B: the same settings run on it beside text A")
        self.text_b.setToolTip("The second text; the first (A) is the main text")
        self._edit_timer = QTimer(self, singleShot=True, interval=EDIT_DELAY_MS)
        self._edit_timer.timeout.connect(lambda: self.session_model.update(compare_text=self.text_b.text()))
        self.text_b.textEdited.connect(lambda _text: self._edit_timer.start())
        self.presets = QComboBox()
        self.presets.addItem("Presets…")
        self.presets.addItems(list(PRESETS))
        self.presets.activated.connect(self._on_preset)
        self.word = QComboBox()
        self.word.setToolTip("The word followed through the layers in both texts")
        self.word.activated.connect(lambda index: self.session_model.update(compare_word=self.word.itemText(index)))
        self.note = QLabel()
        self.note.setWordWrap(True)

        self.canvas = pg.GraphicsLayoutWidget()
        self.plot_a = MatrixPlot(axis_titles=("query", "key"), colorbar=False)
        self.plot_b = MatrixPlot(axis_titles=("query", "key"))
        self.plot_diff = MatrixPlot(colormap=SIGNED_COLORMAP, axis_titles=("query", "key"))
        self.canvas.addItem(self.plot_a, row=0, col=0)
        self.canvas.addItem(self.plot_b, row=0, col=1)
        self.canvas.addItem(self.plot_b.colorbar, row=0, col=2)
        self.canvas.addItem(self.plot_diff, row=0, col=3)
        self.canvas.addItem(self.plot_diff.colorbar, row=0, col=4)
        self.cosine_plot = pg.PlotItem()
        self.cosine_plot.setMenuEnabled(False)
        self.cosine_plot.hideButtons()
        self.cosine_plot.getViewBox().setMouseEnabled(x=False, y=False)
        self.cosine_plot.setLabel("left", "cosine A vs B")
        self.cosine_plot.setLabel("bottom", "layer (0 = embeddings)")
        self.cosine_curve = self.cosine_plot.plot([], [], symbol="o", symbolSize=7)
        self.canvas.addItem(self.cosine_plot, row=1, col=0, colspan=5)
        self.sentence_label = pg.LabelItem("")
        self.canvas.addItem(self.sentence_label, row=2, col=0, colspan=5)
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)
        for plot in (self.plot_a, self.plot_b, self.plot_diff):
            plot.connect_scene()
        self.plot_diff.cell_hovered.connect(lambda r, c, v: self.note.setText(
            f"B − A at {self.plot_diff.describe_cell(r, c)}"))

        controls = QHBoxLayout()
        controls.addWidget(QLabel("B:"))
        controls.addWidget(self.text_b, 1)
        controls.addWidget(self.presets)
        controls.addWidget(QLabel("word:"))
        controls.addWidget(self.word)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(scroll_area(self.canvas), 1)
        layout.addWidget(self.note)
        session_model.compare_text_changed.connect(self._on_compare_text_changed)
        for signal in (session_model.layer_changed, session_model.head_changed, session_model.compare_word_changed):
            signal.connect(self.request_refresh)
        results.changed.connect(self.request_refresh)

    def _on_preset(self, index: int) -> None:
        if index == 0:
            return
        text_a, text_b, word = PRESETS[self.presets.itemText(index)]
        self.text_b.setText(text_b)
        self.session_model.update(text=text_a, compare_text=text_b, compare_word=word)
        self.presets.setCurrentIndex(0)

    def _on_compare_text_changed(self, compare_text: str) -> None:
        if self.text_b.text() != compare_text:
            self.text_b.setText(compare_text)

    def chosen_word(self, result) -> str | None:
        """The session's word if both texts have it, else the first word they share."""
        words = shared_words(result.query_tokens, result.compare.query_tokens)
        wanted = self.session_model.session.compare_word
        if wanted and find_word(result.query_tokens, wanted) is not None \
                and find_word(result.compare.query_tokens, wanted) is not None:
            return wanted
        return words[0] if words else None

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        compare = result.compare
        self.canvas.setVisible(compare is not None)
        if compare is None:
            self.note.setText("Type a second text (B), or pick a preset, to compare it with the main text (A)."
                              if not result.cross_attention else
                              "Compare needs self-attention: clear the cross-attention pair text.")
            return
        layer, head = self.results.shown.layer, self.results.shown.head
        where = f"layer {layer + 1} · head {head + 1}"
        weights_a, weights_b = result.attentions()[layer, head], compare.attentions()[layer, head]
        self.plot_a.set_matrix(weights_a, result.query_tokens, result.key_tokens, levels=(0.0, 1.0))
        self.plot_b.set_matrix(weights_b, compare.query_tokens, compare.key_tokens, levels=(0.0, 1.0))
        self.plot_a.setTitle(f"A · {where}")
        self.plot_b.setTitle(f"B · {where}")
        index_a, index_b = align_tokens(result.query_tokens, compare.query_tokens)
        difference = aligned_difference(weights_a, weights_b, index_a, index_b)
        labels = aligned_labels(result.query_tokens, compare.query_tokens, index_a, index_b)
        self.plot_diff.set_matrix(difference, labels, labels, symmetric=True)
        self.plot_diff.setTitle(f"B − A on {len(labels)} aligned tokens")
        self.difference = difference
        self._show_word(result, compare)
        fit_minimum(self.canvas)

    def _show_word(self, result, compare) -> None:
        words = shared_words(result.query_tokens, compare.query_tokens)
        if [self.word.itemText(i) for i in range(self.word.count())] != words:
            self.word.clear()
            self.word.addItems(words)
        word = self.chosen_word(result)
        self.similarity = cosine_similarity(result.sentence_embedding, compare.sentence_embedding)
        self.similarity_without = None
        sentence = f"sentence embeddings (mean-pooled, normalised): cosine A vs B = {self.similarity:.4f}"
        if result.baseline is not None and result.baseline.compare is not None:
            self.similarity_without = cosine_similarity(result.baseline.sentence_embedding,
                                                        result.baseline.compare.sentence_embedding)
            sentence += f" with {self.session_model.session.ablation.describe()}, {self.similarity_without:.4f} without"
        self.sentence_label.setText(sentence, color=theme.color("foreground"))
        if word is None:
            self.cosines = None
            self.cosine_curve.setData([], [])
            self.cosine_plot.setTitle("the two texts share no word to follow")
            self.note.setText("Hover the B − A map to read a cell's change.")
            return
        self.word.setCurrentIndex(words.index(word) if word in words else 0)
        index_a, index_b = find_word(result.query_tokens, word), find_word(compare.query_tokens, word)
        hidden_a = [to_numpy(h) for h in result.forward.hidden_states]
        hidden_b = [to_numpy(h) for h in compare.forward.hidden_states]
        self.cosines = layer_cosines(hidden_a, index_a, hidden_b, index_b)
        color = theme.color("lines")
        self.cosine_curve.setData(np.arange(self.cosines.size), self.cosines, pen=pg.mkPen(color, width=2),
                                  symbolBrush=color, symbolPen=None)
        self.cosine_plot.setYRange(min(0.0, float(self.cosines.min())), 1.0)
        self.cosine_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(self.cosines.size)]])
        self.cosine_plot.setTitle(f"{word!r} in A (token {index_a}) vs B (token {index_b}): cosine of its hidden "
                                  f"state at each layer, {self.cosines[-1]:.3f} at the last")
        self.note.setText("Hover the B − A map to read a cell's change; pick the followed word above.")

    def _export_widget(self):
        return self.canvas
