"""Compare two texts: A and B side by side at the same layer and head, B − A where the tokens align,
and one word followed through the layers in both contexts (cosine of its hidden states) with its
attention rows in A and B side by side. The followed word is kept by its text and its position while
either text is typed: it never jumps to another word."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from attnstudio.core.analysis import (
    align_tokens,
    aligned_difference,
    aligned_labels,
    bare_token,
    cosine_similarity,
    is_separator,
    layer_cosines,
)
from attnstudio.core.backend import to_numpy
from attnstudio.core.follow import matching_position, nearest_occurrence, occurrences
from attnstudio.presets import comparison_presets
from attnstudio.ui import theme
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.views.base import ResultView
from attnstudio.ui.views.compare_rows import AttentionRowPlot, ElidedTitlePlot
from attnstudio.ui.views.matrix import SIGNED_COLORMAP, MatrixPlot
from attnstudio.ui.views.scrolling import fit_minimum, scroll_area

PRESETS = comparison_presets()  # name -> (text A, text B, the word to follow)
EDIT_DELAY_MS = 300
ENCODER_DECODER_NOTE = ("Compare runs text B through one-text models (an encoder such as MiniLM, a decoder such as "
                        "SmolLM2); an encoder-decoder model (T5) is not compared.")
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
        self.word.activated.connect(self._on_word_chosen)
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
        self.cosine_plot = ElidedTitlePlot()
        self.cosine_plot.setMenuEnabled(False)
        self.cosine_plot.hideButtons()
        self.cosine_plot.getViewBox().setMouseEnabled(x=False, y=False)
        self.cosine_plot.setLabel("left", "cosine A vs B")  # of the followed word's hidden states
        self.cosine_plot.setLabel("bottom", "layer (0 = embeddings)")
        self.cosine_curve = self.cosine_plot.plot([], [], symbol="o", symbolSize=7)
        self.word_row = pg.GraphicsLayout()  # the word's cosine per layer, and its attention rows in A and B
        self.row_a, self.row_b = AttentionRowPlot(), AttentionRowPlot()
        self.word_row.addItem(self.cosine_plot, row=0, col=0)
        self.word_row.addItem(self.row_a, row=0, col=1)
        self.word_row.addItem(self.row_b, row=0, col=2)
        self.word_row.layout.setColumnStretchFactor(0, 3)
        self.word_row.layout.setColumnStretchFactor(1, 2)
        self.word_row.layout.setColumnStretchFactor(2, 2)
        self.cosine_plot.setPreferredWidth(360)  # stretch shares out what is left over the preferred widths
        for plot in (self.row_a, self.row_b):
            plot.setPreferredWidth(200)
        self.canvas.addItem(self.word_row, row=1, col=0, colspan=5)
        self.sentence_label = pg.LabelItem("")
        self.canvas.addItem(self.sentence_label, row=2, col=0, colspan=5)
        self.canvas.ci.layout.setRowStretchFactor(0, 3)
        self.canvas.ci.layout.setRowStretchFactor(1, 2)
        for plot in (self.plot_a, self.plot_b, self.plot_diff):
            plot.connect_scene()
        self.plot_diff.cell_hovered.connect(lambda r, c, v: self.note.setText(
            f"B − A at {self.plot_diff.describe_cell(r, c)}"))
        self.plot_a.cell_clicked.connect(self._on_a_clicked)
        self.followed: tuple[str, int | None, int | None] | None = None  # (word, index in A, index in B)
        self._tokens_a: list[str] | None = None  # text A's tokens the followed position refers to

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
        for signal in (session_model.layer_changed, session_model.head_changed, session_model.compare_word_changed,
                       session_model.compare_position_changed):
            signal.connect(self.request_refresh)
        results.changed.connect(self.request_refresh)

    def _on_preset(self, index: int) -> None:
        if index == 0:
            return
        text_a, text_b, word = PRESETS[self.presets.itemText(index)]
        self.text_b.setText(text_b)
        self.session_model.update(text=text_a, compare_text=text_b, compare_word=word, compare_position=-1)
        self.presets.setCurrentIndex(0)

    def _on_compare_text_changed(self, compare_text: str) -> None:
        if self.text_b.text() != compare_text:
            self.text_b.setText(compare_text)

    def _on_word_chosen(self, index: int) -> None:
        word = self.word.itemData(index, Qt.UserRole) or self.word.itemText(index)
        if word != self.session_model.session.compare_word:
            self.session_model.update(compare_word=word, compare_position=-1)

    def _on_a_clicked(self, row: int, _col: int) -> None:
        """Clicking a row of A's map follows that very token (the second 'bank', not the first)."""
        result = self.results.result
        if result is None or row >= len(result.query_tokens):
            return
        token = result.query_tokens[row]
        if token in SPECIAL_TOKENS or is_separator(token):
            return
        self.session_model.update(compare_word=bare_token(token), compare_position=row)

    def follow(self, result, compare) -> tuple[str, int | None, int | None] | None:
        """(word, its index in A, its index in B) of the followed token; an index is None while that text lacks it.

        The session's word is kept whatever the texts hold now (typing never swaps it for another word); at its
        position in A when the token there still spells it, else at the occurrence nearest that position.
        With no word chosen: the first word both texts share, or None.
        """
        session = self.session_model.session
        tokens_a, tokens_b = result.query_tokens, compare.query_tokens
        word, position = session.compare_word, session.compare_position
        if not word:
            words = shared_words(tokens_a, tokens_b)
            if not words:
                return None
            word, position = words[0], -1
        before = self._tokens_a  # A's tokens when the position was last right: align the edit to carry it over
        if before is not None and before != tokens_a and 0 <= position < len(before) \
                and position in occurrences(before, word):
            index_a = matching_position(before, tokens_a, position, word)
        else:
            index_a = nearest_occurrence(tokens_a, word, position)
        self._tokens_a = tokens_a
        index_b = None if index_a is None else matching_position(tokens_a, tokens_b, index_a, word)
        if index_b is None and index_a is None:
            index_b = nearest_occurrence(tokens_b, word, position)
        if session.compare_word and index_a is not None and index_a != position:
            # A changed around the word: remember where it is now, so the next edit starts from there
            QTimer.singleShot(0, lambda: self.session_model.update(compare_position=index_a)
                              if self.session_model.session.compare_word == word else None)
        return word, index_a, index_b

    def refresh(self) -> None:
        result = self.results.result
        if result is None:
            return
        compare = result.compare
        self.canvas.setVisible(compare is not None)
        encoder_decoder = result.kinds is not None  # text B is run by one-text models only
        for widget in (self.text_b, self.presets):
            widget.setEnabled(not encoder_decoder)
        if compare is None:
            self.note.setText(ENCODER_DECODER_NOTE if encoder_decoder else
                              "Compare needs self-attention: clear the cross-attention pair text."
                              if result.cross_attention else
                              "Type a second text (B), or pick a preset, to compare it with the main text (A).")
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
        self._sentence_similarity(result, compare)
        self.followed = followed = self.follow(result, compare)
        items = list(words)
        if followed is not None and followed[0].casefold() not in {w.casefold() for w in words}:
            items.append(followed[0])  # a word B lacks (yet) stays chosen, and shown as chosen
        if [self.word.itemText(i) for i in range(self.word.count())] != items:
            self.word.clear()
            self.word.addItems(items)
        if followed is None:
            self._clear_word("the two texts share no word to follow")
            self.note.setText("Hover the B − A map to read a cell's change.")
            return
        word, index_a, index_b = followed
        self.word.setCurrentIndex([w.casefold() for w in items].index(word.casefold()))
        nth = self._which(result.query_tokens, word, index_a)
        if index_a is None or index_b is None:
            lacking = "A" if index_a is None else "B"
            self._clear_word(f"{word!r} is not in {lacking} (yet): type it, or pick another word", index_a, index_b,
                             result, compare)
            self.note.setText(f"Following {word!r}{nth}; {lacking} does not have it now, so nothing is compared.")
            return
        hidden_a = [to_numpy(h) for h in result.forward.hidden_states]
        hidden_b = [to_numpy(h) for h in compare.forward.hidden_states]
        self.cosines = layer_cosines(hidden_a, index_a, hidden_b, index_b)
        color = theme.color("lines")
        self.cosine_curve.setData(np.arange(self.cosines.size), self.cosines, pen=pg.mkPen(color, width=2),
                                  symbolBrush=color, symbolPen=None)
        self.cosine_plot.setYRange(min(0.0, float(self.cosines.min())), 1.0)
        step = max(1, -(-self.cosines.size // 8))  # at most ~8 layer numbers: 31 of them would overlap
        self.cosine_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(0, self.cosines.size, step)]])
        self.cosine_plot.setTitle(f"{word!r}: {self.cosines[-1]:.3f} at the last layer (A token {index_a}, "
                                  f"B token {index_b})", size="9pt")
        self._show_rows(result, compare, word, index_a, index_b)
        self.note.setText(f"Following {word!r}{nth} (click a row of A to follow another token). "
                          "Hover the B − A map to read a cell's change.")

    @staticmethod
    def _which(tokens: list[str], word: str, index: int | None) -> str:
        """' (its 2nd of 2 in A)' when A has the word more than once, else ''."""
        found = occurrences(tokens, word)
        if index is None or len(found) < 2:
            return ""
        rank = found.index(index) + 1
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(rank if rank < 20 else rank % 10, "th")
        return f" (its {rank}{suffix} of {len(found)} in A)"

    def _show_rows(self, result, compare, word: str, index_a: int | None, index_b: int | None) -> None:
        """The word's attention rows in A and B at the shown layer and head."""
        layer, head = self.results.shown.layer, self.results.shown.head
        where = f"L{layer + 1}·H{head + 1}"
        for plot, side, source, index in ((self.row_a, "A", result, index_a), (self.row_b, "B", compare, index_b)):
            if index is None:
                plot.set_row(None, [], None, f"{side} has no {word!r}")
                continue
            row = source.attentions()[layer, head, index]
            plot.set_row(row, source.key_tokens, index, f"{side}: {word!r} (token {index}) attends · {where}")

    def _clear_word(self, title: str, index_a=None, index_b=None, result=None, compare=None) -> None:
        self.cosines = None
        self.cosine_curve.setData([], [])
        self.cosine_plot.setTitle(title, size="9pt")
        if result is None:
            self.row_a.set_row(None, [], None, "")
            self.row_b.set_row(None, [], None, "")
        else:
            self._show_rows(result, compare, self.followed[0], index_a, index_b)

    def _sentence_similarity(self, result, compare) -> None:
        self.similarity = cosine_similarity(result.sentence_embedding, compare.sentence_embedding)
        self.similarity_without = None
        sentence = f"sentence embeddings (mean-pooled, normalised): cosine A vs B = {self.similarity:.4f}"
        if result.baseline is not None and result.baseline.compare is not None:
            self.similarity_without = cosine_similarity(result.baseline.sentence_embedding,
                                                        result.baseline.compare.sentence_embedding)
            sentence += f"<br>with {result.session.ablation.describe()}; {self.similarity_without:.4f} without"
        self.sentence_label.setText(sentence, color=theme.color("foreground"))

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        QTimer.singleShot(0, self._relayout)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        QTimer.singleShot(0, self._relayout)

    def _relayout(self) -> None:
        """Lay the panels out for the canvas's size now: a resize while hidden (or a theme toggle re-rendering
        the titles) can leave the nested layout at its old width, panels past the canvas's edge."""
        for layout in (self.word_row.layout, self.canvas.ci.layout):
            layout.invalidate()
            layout.activate()
        fit_minimum(self.canvas)

    def _export_widget(self):
        return self.canvas
