"""The Qt face of a :class:`Session`: setters that validate, and one signal per field.

Every field of :class:`Session` has its own signal, ``<field>_changed(new_value)`` (``text_changed``,
``layer_changed``, ``mask_changed``…), generated here from ``dataclasses.fields(Session)`` so a new
field gets its signal without a second list. A widget connects only the fields it shows
(napari's ``dims.events.current_step``); nobody filters a catch-all signal by name.
"""
from __future__ import annotations

import copy
import dataclasses

from PySide6.QtCore import QObject, Signal, SignalInstance

from attnstudio.engine import check_heads
from attnstudio.errors import AttnStudioError
from attnstudio.session import Session

FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Session))
# Fields that only change what is drawn, not what is computed.
VIEW_FIELDS = frozenset({"layer", "head", "view", "profile", "color_scale", "hide_special",
                         "compare_word", "cell"})
# View fields that change the picture of a result (the result model re-publishes on them).
DISPLAY_FIELDS = frozenset({"layer", "head", "color_scale", "hide_special"})


def changed_signal_name(field_name: str) -> str:
    """The name of a field's signal: ``layer`` -> ``layer_changed``."""
    return f"{field_name}_changed"


# Qt registers signals when a class is created, so the per-field signals live on a generated base class.
_FieldSignals = type("_FieldSignals", (QObject,),
                     {changed_signal_name(name): Signal(object) for name in FIELD_NAMES})


class SessionModel(_FieldSignals):
    """Owns the session. Widgets connect ``<field>_changed`` and write back through :meth:`update`.

    Read the state as ``session_model.session.<field>`` (a copy: edits go through :meth:`update`).
    """

    edited = Signal()  # once after every accepted change of one or more fields (autosave listens)
    compute_needed = Signal()
    rejected = Signal(str)  # a change that was refused, and why

    def __init__(self, session: Session | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._session = (session or Session()).validate()

    @property
    def session(self) -> Session:
        """A copy of the current state (edit through :meth:`update`)."""
        return copy.copy(self._session)

    def signal(self, field_name: str) -> SignalInstance:
        """The ``<field>_changed`` signal of ``field_name`` (for code that connects a set of fields)."""
        if field_name not in FIELD_NAMES:
            raise KeyError(f"a session has no field {field_name!r}")
        return getattr(self, changed_signal_name(field_name))

    def update(self, **changes) -> bool:
        """Apply ``changes`` if the result is valid; emit ``<field>_changed`` for each field that differs."""
        try:
            candidate = dataclasses.replace(self._session, **changes).validate()
            if "heads" in changes or "model" in changes:
                check_heads(candidate.model, candidate.heads)  # an invalid count never enters the session
        except (AttnStudioError, TypeError) as error:
            self.rejected.emit(str(error))
            return False
        changed = [name for name in changes if getattr(candidate, name) != getattr(self._session, name)]
        if changed:
            self._session = candidate
            self._announce(changed)
        return True

    def replace(self, session: Session) -> None:
        """Load a whole session (e.g. from a file): every field is announced. Raises AttnStudioError
        (and changes nothing) if the session is invalid, or its head count does not suit its model."""
        check_heads(session.validate().model, session.heads)
        self._session = session
        self._announce(FIELD_NAMES, compute=True)

    def _announce(self, names, *, compute: bool = False) -> None:
        for name in names:
            self.signal(name).emit(getattr(self._session, name))
        self.edited.emit()
        if compute or any(name not in VIEW_FIELDS for name in names):
            self.compute_needed.emit()
