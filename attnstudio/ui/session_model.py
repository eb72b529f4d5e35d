"""The Qt face of a :class:`Session`: setters that validate, and a signal per changed field."""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import QObject, Signal

from attnstudio.engine import check_heads
from attnstudio.errors import AttnStudioError
from attnstudio.session import Session

# Fields that only change what is drawn, not what is computed.
VIEW_FIELDS = frozenset({"layer", "head", "view", "profile", "color_scale", "hide_special",
                         "compare_word", "cell", "attention_kind"})
# View fields that change the picture of a result (the result model re-publishes on them).
DISPLAY_FIELDS = frozenset({"layer", "head", "color_scale", "hide_special", "attention_kind"})


class SessionModel(QObject):
    """Owns the session. Widgets subscribe to ``changed`` and write back through :meth:`update`."""

    changed = Signal(str)  # the name of one field that changed
    compute_needed = Signal()
    rejected = Signal(str)  # a change that was refused, and why

    def __init__(self, session: Session | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._session = (session or Session()).validate()

    @property
    def session(self) -> Session:
        """A copy of the current state (edit through :meth:`update`)."""
        return dataclasses.replace(self._session)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._session, name)

    def update(self, **changes) -> bool:
        """Apply ``changes`` if the result is valid; emit ``changed`` for each field that differs."""
        try:
            candidate = dataclasses.replace(self._session, **changes).validate()
            if "heads" in changes or "model" in changes:
                check_heads(candidate.model, candidate.heads)  # an invalid count never enters the session
        except (AttnStudioError, TypeError) as error:
            self.rejected.emit(str(error))
            return False
        changed = [name for name in changes if getattr(candidate, name) != getattr(self._session, name)]
        if not changed:
            return True
        self._session = candidate
        for name in changed:
            self.changed.emit(name)
        if any(name not in VIEW_FIELDS for name in changed):
            self.compute_needed.emit()
        return True

    def replace(self, session: Session) -> None:
        """Load a whole session (e.g. from a file): every field is announced. Raises AttnStudioError
        (and changes nothing) if the session is invalid, or its head count does not suit its model."""
        check_heads(session.validate().model, session.heads)
        self._session = session
        for field in dataclasses.fields(Session):
            self.changed.emit(field.name)
        self.compute_needed.emit()
