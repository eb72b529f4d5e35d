"""Where a prefix-cache extension writes its keys and values: buffers with spare rows, so a key press copies only
the rows that changed, not every layer's keys and values (71 MB for SmolLM2 at 512 tokens).

The new rows attend to every key and value, so those must be whole arrays; but the result on screen reads its own
rows while the next extension is computed, so rows it shows are never overwritten in place. There are two slots of
buffers (double buffering): an extension writes a slot no array looks into any more (``sys.getrefcount``: no result
that could be on screen, nor any view of one, holds it), copies in the rows that slot lacks (those the last edits
changed) and writes its new rows; its keys and values are views of that slot. When no slot is free (an older result
is still alive), keys and values are joined as before. Arrays off the host (CuPy) are always joined.
"""
from __future__ import annotations

import sys

import numpy as np

from attnstudio.core.backend import concat, is_host_array

MAX_SLOTS = 2
SPARE_ROWS = 64  # rows a slot holds beyond the text it was made for (at least; a quarter more for long texts)


class _Slot:
    def __init__(self):
        self.buffers: dict[tuple, np.ndarray] = {}  # (layer, name) -> (heads, capacity, head_dim)
        self.capacity = 0
        self.synced = 0  # rows [0, synced) of every buffer equal those of the current result

    def in_use(self) -> bool:
        """Whether an array still looks into this slot (a view holds its buffer: one reference more than ours)."""
        return any(sys.getrefcount(self.buffers[key]) > 2 for key in self.buffers)


class RowWriter:
    """Joins one extension's keys and values (m kept rows, n in all) in a slot."""

    def __init__(self, slot: _Slot, m: int, n: int):
        self.slot, self.m, self.n = slot, m, n

    def join(self, key: tuple, past, new):
        """``concat([past, new], axis=1)`` for (heads, m, d) and (heads, n - m, d): a view of the slot's buffer."""
        if not (is_host_array(past) and is_host_array(new)):
            return concat([past, new], axis=1)
        slot, m, n = self.slot, self.m, self.n
        buffer = slot.buffers.get(key)
        start = slot.synced  # rows before it are the current result's already
        if buffer is None or buffer.shape[::2] != past.shape[::2] or buffer.dtype != new.dtype:
            buffer = slot.buffers[key] = np.empty((past.shape[0], slot.capacity, past.shape[2]), dtype=new.dtype)
            start = 0
        buffer[:, start:m] = past[:, start:m]
        buffer[:, m:n] = new
        return buffer[:, :n]


class RowSlots:
    """The slots of one prefix cache (see the module)."""

    def __init__(self):
        self._slots: list[_Slot] = []
        self._current: _Slot | None = None  # the slot the last result's keys and values are in

    def writer(self, m: int, n: int) -> RowWriter | None:
        """A writer for an extension of m kept rows to n, or None when no slot is free (then join as before)."""
        free = [slot for slot in self._slots if slot is not self._current and not slot.in_use()]
        if not free and len(self._slots) < MAX_SLOTS:
            self._slots.append(_Slot())
            free = self._slots[-1:]
        if not free:
            return None
        slot = max(free, key=lambda candidate: candidate.synced)
        if slot.capacity < n:
            slot.buffers.clear()
            slot.capacity, slot.synced = n + max(SPARE_ROWS, n // 4), 0
        slot.synced = min(slot.synced, m)  # rows from m on are about to change (also if the extension fails)
        return RowWriter(slot, m, n)

    def written(self, writer: RowWriter | None, m: int, n: int) -> None:
        """After an extension of m kept rows to n, through ``writer`` (None: keys and values were joined)."""
        for slot in self._slots:
            slot.synced = min(slot.synced, m)
        if writer is not None:
            writer.slot.synced = n
        self._current = None if writer is None else writer.slot

    def forget(self) -> None:
        """After a full pass (or a cleared cache): no slot holds the current result's rows."""
        for slot in self._slots:
            slot.synced = 0
        self._current = None
