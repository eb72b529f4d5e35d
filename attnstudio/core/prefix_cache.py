"""Live typing in a causal model: reuse the forward pass of the tokens an edit kept.

In a causal model, a token's queries, keys, values, attention row and hidden states depend
only on the tokens up to it. When an edit keeps the first m tokens of the previous text
(and the settings, and the first m rows of the mask, are unchanged), the previous pass cut to
m rows is a valid past for the family's ``extend``, which computes only the new rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attnstudio.core.extended_trace import HiddenStatesOnRead
from attnstudio.core.parallel import blas_threads_for_rows
from attnstudio.core.row_slots import RowSlots
from attnstudio.core.transformer import ForwardResult


def first_rows(result: ForwardResult, m: int) -> ForwardResult:
    """The forward pass of the first m tokens, cut out of a pass over more (views, no copies)."""
    hidden = result.hidden_states
    return ForwardResult([trace.first_rows(m) for trace in result.traces],
                         hidden.first_rows(m) if isinstance(hidden, HiddenStatesOnRead) else [h[:m] for h in hidden],
                         None)


def kept_prefix(before: np.ndarray, after: np.ndarray) -> int:
    """How many leading token ids two texts share."""
    n = min(len(before), len(after))
    differ = np.flatnonzero(before[:n] != after[:n])
    return int(differ[0]) if differ.size else n


@dataclass
class _Entry:
    parameters: Any
    options: tuple
    ids: np.ndarray  # (n,) host
    mask: np.ndarray | None  # (n, n) host, the user's mask (None: only the model's own)
    result: ForwardResult


class PrefixCache:
    """Remembers the last pass of one causal model and extends it when the next text shares a prefix."""

    def __init__(self):
        self._entry: _Entry | None = None
        self._slots = RowSlots()  # where extensions write their keys and values
        self.reused = 0  # rows reused by the last call (0: it computed everything)

    def forward(self, family, parameters, ids_host: np.ndarray, ids, *, mask_host=None, mask=None,
                **options) -> ForwardResult:
        """``family.forward(parameters, ids, mask=mask, **options)``, from the kept prefix where it can be
        (families without ``extend`` always run in full)."""
        ids_host = np.asarray(ids_host)
        key = tuple(sorted(options.items()))
        m = self._reusable(parameters, key, ids_host, mask_host) if family.extend is not None else 0
        with blas_threads_for_rows(len(ids_host) - m):  # the rows computed
            if m:
                writer = self._slots.writer(m, len(ids_host))
                result = family.extend(parameters, first_rows(self._entry.result, m), ids, mask=mask, rows=writer,
                                       **options)
                self._slots.written(writer, m, len(ids_host))
            else:
                self._slots.forget()
                result = family.forward(parameters, ids, mask=mask, **options)
        self.reused = m
        self._entry = _Entry(parameters, key, ids_host.copy(), None if mask_host is None else mask_host.copy(), result)
        return result

    def _reusable(self, parameters, key: tuple, ids: np.ndarray, mask) -> int:
        entry = self._entry
        if entry is None or entry.parameters is not parameters or entry.options != key:
            return 0
        m = min(kept_prefix(entry.ids, ids), len(ids) - 1)  # at least one new row: it gives the logits
        if m < 1 or (entry.mask is None) != (mask is None):
            return 0
        if mask is not None and not np.array_equal(entry.mask[:m, :m], mask[:m, :m]):
            return 0
        return m

    def clear(self) -> None:
        self._entry = None
        self._slots.forget()
