"""The switch-heads-off controls the heads grid and the model view share: one checkbox, one mode, "All on"."""
from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QPushButton, QWidget

from attnstudio.core.ablation import ABLATION_MODES, Ablation
from attnstudio.ui.session_model import SessionModel


class AblationControls(QWidget):
    """When ``ablate`` is checked, :meth:`toggle` switches a (layer, head) off, or on again, in the session."""

    def __init__(self, session_model: SessionModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.session_model = session_model
        self.ablate = QCheckBox("Switch heads off")
        self.ablate.setToolTip("When on, clicking a head switches it off (or on again) in every compute")
        self.mode = QComboBox()
        self.mode.addItems(list(ABLATION_MODES))
        self.mode.setToolTip("zero: the head outputs nothing; uniform: it attends evenly to its keys")
        self.mode.setCurrentText(session_model.session.ablation.mode)
        self.mode.activated.connect(lambda _index: self._set(self.session_model.session.ablation.heads))
        self.clear = QPushButton("All on")
        self.clear.setToolTip("Switch every head on again")
        self.clear.clicked.connect(lambda: self._set(()))
        session_model.ablation_changed.connect(lambda ablation: self.mode.setCurrentText(ablation.mode))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.ablate)
        layout.addWidget(self.mode)
        layout.addWidget(self.clear)

    def active(self) -> bool:
        return self.ablate.isChecked()

    def toggle(self, layer: int, head: int) -> None:
        """Switch (layer, head) off if it is on, on if it is off."""
        heads = set(self.session_model.session.ablation.heads) ^ {(layer, head)}
        self._set(tuple(sorted(heads)))

    def _set(self, heads) -> None:
        self.session_model.update(ablation=Ablation(tuple(heads), self.mode.currentText()))
