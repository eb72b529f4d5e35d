"""Attention masks. True means "this query may attend to this key".

A :class:`MaskSpec` is the user's description (kind, window width, padding
length, hand-blocked cells); :func:`build_mask` turns it into a boolean
(n_q, n_k) array on any backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnstudio.errors import InvalidSetting

MASK_KINDS = ("none", "causal", "padding", "window")
MAX_WINDOW = 1_000_000


def causal_mask(n_q: int, n_k: int, xp=np):
    """Query i sees keys j <= i.  Shape (n_q, n_k)."""
    rows = xp.reshape(xp.arange(n_q), (n_q, 1))
    cols = xp.reshape(xp.arange(n_k), (1, n_k))
    return cols <= rows


def sliding_window_mask(n_q: int, n_k: int, width: int, xp=np):
    """Query i sees keys j with |i - j| <= width (width neighbours each side).  Shape (n_q, n_k)."""
    if width < 0:
        raise InvalidSetting(f"window width must be >= 0, got {width}")
    rows = xp.reshape(xp.arange(n_q), (n_q, 1))
    cols = xp.reshape(xp.arange(n_k), (1, n_k))
    return xp.abs(cols - rows) <= width


def padding_mask(n_q: int, n_k: int, valid_keys: int, xp=np):
    """Every query sees only the first ``valid_keys`` keys (the rest are padding).  Shape (n_q, n_k)."""
    cols = xp.reshape(xp.arange(n_k), (1, n_k))
    return xp.broadcast_to(cols < valid_keys, (n_q, n_k))


def cells_mask(n_q: int, n_k: int, blocked_cells, xp=np):
    """Everything allowed except the (query, key) cells in ``blocked_cells``; cells out of range are ignored."""
    allowed = np.ones((n_q, n_k), dtype=bool)
    for row, col in blocked_cells:
        if 0 <= row < n_q and 0 <= col < n_k:
            allowed[row, col] = False
    return xp.asarray(allowed)


@dataclass(frozen=True)
class MaskSpec:
    """What the user chose: a kind, its parameter, and cells blocked by hand."""

    kind: str = "none"
    width: int = 2  # sliding window: neighbours on each side
    pad_to: int | None = None  # padding: length after padding (None: the next multiple of 8)
    blocked_cells: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in MASK_KINDS:
            raise InvalidSetting(f"unknown mask {self.kind!r}; choose one of {', '.join(MASK_KINDS)}")
        if not isinstance(self.width, int) or not 0 <= self.width <= MAX_WINDOW:
            raise InvalidSetting(f"window width must be an integer from 0 to {MAX_WINDOW}, got {self.width!r}")
        if self.pad_to is not None and (not isinstance(self.pad_to, int) or not 1 <= self.pad_to <= 512):
            raise InvalidSetting(f"padding length must be an integer from 1 to 512, got {self.pad_to!r}")
        cells = tuple((int(row), int(col)) for row, col in self.blocked_cells)
        object.__setattr__(self, "blocked_cells", cells)

    def padded_length(self, n_tokens: int) -> int:
        """Sequence length after padding (only for kind "padding")."""
        if self.kind != "padding":
            return n_tokens
        if self.pad_to is not None:
            return max(self.pad_to, n_tokens)
        return (n_tokens // 8 + 1) * 8  # always at least one padding token to show

    def with_cell_toggled(self, row: int, col: int) -> "MaskSpec":
        cells = set(self.blocked_cells)
        cells.symmetric_difference_update({(row, col)})
        return MaskSpec(self.kind, self.width, self.pad_to, tuple(sorted(cells)))

    def describe(self) -> str:
        text = {"none": "no mask", "causal": "causal", "padding": "key padding",
                "window": f"sliding window ±{self.width}"}[self.kind]
        if self.blocked_cells:
            text += f" + {len(self.blocked_cells)} custom cell(s)"
        return text


def parse_mask_spec(text: str) -> MaskSpec:
    """Parse the CLI syntax: none | causal | window:W | padding[:N] | custom:FILE.npy, joined by '+'.

    ``custom:FILE.npy`` is a boolean (n_q, n_k) matrix, True where attention is allowed.
    """
    kind, width, pad_to, cells = "none", 2, None, []
    for part in (p.strip() for p in text.split("+")):
        name, _, argument = part.partition(":")
        name = name.strip().lower()
        if name in ("none", "causal") and not argument:
            kind = name if name != "none" else kind
        elif name == "window":
            kind, width = "window", _parse_int(argument, "window width")
        elif name == "padding":
            kind = "padding"
            pad_to = _parse_int(argument, "padding length") if argument else None
        elif name == "custom" and argument:
            cells.extend(_load_blocked_cells(Path(argument)))
        else:
            raise InvalidSetting(
                f"unknown mask {part!r}; use none, causal, window:W, padding[:N] or custom:FILE.npy")
    return MaskSpec(kind, width, pad_to, tuple(cells))


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidSetting(f"{what} must be an integer, got {text!r}") from None


def _load_blocked_cells(path: Path) -> list[tuple[int, int]]:
    try:
        allowed = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InvalidSetting(f"cannot read custom mask {path}: {error}") from None
    if allowed.ndim != 2:
        raise InvalidSetting(f"custom mask {path} must be a 2-D matrix, got shape {allowed.shape}")
    return [tuple(cell) for cell in np.argwhere(~allowed.astype(bool)).tolist()]


def build_mask(spec: MaskSpec, n_q: int, n_k: int, *, valid_keys: int | None = None, xp=np):
    """The boolean (n_q, n_k) mask for ``spec``, or None when nothing is masked."""
    parts = []
    if spec.kind == "causal":
        parts.append(causal_mask(n_q, n_k, xp))
    elif spec.kind == "window":
        parts.append(sliding_window_mask(n_q, n_k, spec.width, xp))
    elif spec.kind == "padding" and valid_keys is not None and valid_keys < n_k:
        parts.append(padding_mask(n_q, n_k, valid_keys, xp))
    if spec.blocked_cells:
        parts.append(cells_mask(n_q, n_k, spec.blocked_cells, xp))
    if not parts:
        return None
    mask = parts[0]
    for part in parts[1:]:
        mask = xp.logical_and(mask, part)
    return mask
