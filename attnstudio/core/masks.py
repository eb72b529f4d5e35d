"""Attention masks. True means "this query may attend to this key".

A :class:`MaskSpec` is the user's description (the parts that apply together,
window width, padding length, hand-blocked cells); :func:`build_mask` turns it into a boolean
(n_q, n_k) array on any backend.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from attnstudio.errors import FileReadError, InvalidSetting
from attnstudio.limits import LIMITS

MASK_KINDS = ("none", "causal", "window", "padding")  # "none" only in the CLI syntax and old files
MAX_WINDOW = LIMITS["window"].high


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


MASK_PART_LABELS = {"causal": "causal", "window": "sliding window", "padding": "key padding"}


@dataclass(frozen=True)
class MaskSpec:
    """What the user chose: the mask parts that apply together, their parameters, and cells blocked by hand.

    ``kinds`` holds any of "causal", "window", "padding" (a "+"-joined string is accepted too); a query
    may attend to a key only where every part allows it.
    """

    kinds: tuple[str, ...] = ()
    width: int = 2  # sliding window: neighbours on each side
    pad_to: int | None = None  # padding: length after padding (None: the next multiple of 8)
    blocked_cells: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def __post_init__(self):
        kinds = self.kinds
        if isinstance(kinds, str):
            kinds = kinds.split("+")
        try:
            names = {str(kind).strip().lower() for kind in kinds} - {""}
        except TypeError:
            raise InvalidSetting(f"mask kinds must be a list of names, got {self.kinds!r}") from None
        for name in names:
            if name not in MASK_KINDS:
                raise InvalidSetting(f"unknown mask {name!r}; choose from {', '.join(MASK_KINDS)}")
        # One canonical order, so equal masks compare equal however they were written.
        object.__setattr__(self, "kinds", tuple(kind for kind in MASK_KINDS if kind in names and kind != "none"))
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 0 <= self.width <= MAX_WINDOW:
            raise InvalidSetting(f"window width must be an integer from 0 to {MAX_WINDOW}, got {self.width!r}")
        if self.pad_to is not None:
            LIMITS["pad_to"].check(self.pad_to)
        cells = tuple((int(row), int(col)) for row, col in self.blocked_cells)
        object.__setattr__(self, "blocked_cells", cells)

    @property
    def kind(self) -> str:
        """The parts as the CLI writes them ("causal+window"), or "none"."""
        return "+".join(self.kinds) or "none"

    def has(self, kind: str) -> bool:
        return kind in self.kinds

    def with_kind(self, kind: str, on: bool) -> MaskSpec:
        """This mask with the part ``kind`` switched on or off."""
        kinds = set(self.kinds) | {kind} if on else set(self.kinds) - {kind}
        return replace(self, kinds=tuple(kinds))

    def padded_length(self, n_tokens: int) -> int:
        """Sequence length after padding (only when the padding part is on)."""
        if not self.has("padding"):
            return n_tokens
        if self.pad_to is not None:
            return max(self.pad_to, n_tokens)
        return (n_tokens // 8 + 1) * 8  # always at least one padding token to show

    def with_cell_toggled(self, row: int, col: int) -> MaskSpec:
        cells = set(self.blocked_cells)
        cells.symmetric_difference_update({(row, col)})
        return replace(self, blocked_cells=tuple(sorted(cells)))

    def describe(self) -> str:
        """Every part, e.g. "causal + sliding window ±2 + 3 custom cell(s)"."""
        parts = [f"sliding window ±{self.width}" if kind == "window" else MASK_PART_LABELS[kind]
                 for kind in self.kinds]
        if self.blocked_cells:
            parts.append(f"{len(self.blocked_cells)} custom cell(s)")
        return " + ".join(parts) or "no mask"

    def to_json_dict(self) -> dict:
        return {"kinds": list(self.kinds), "width": self.width, "pad_to": self.pad_to,
                "blocked_cells": [list(cell) for cell in self.blocked_cells]}


def parse_mask_spec(text: str) -> MaskSpec:
    """Parse the CLI syntax: none | causal | window:W | padding[:N] | custom:FILE.npy, joined by '+'.

    Every part applies: the mask is the intersection of what each part allows.
    ``custom:FILE.npy`` is a boolean (n_q, n_k) matrix, True where attention is allowed.
    """
    kinds, width, pad_to, cells = set(), 2, None, []
    for part in (p.strip() for p in text.split("+")):
        name, _, argument = part.partition(":")
        name = name.strip().lower()
        if name in ("none", "causal") and not argument:
            kinds.add(name)
        elif name == "window":
            kinds.add("window")
            width = _parse_int(argument, "window width")
        elif name == "padding":
            kinds.add("padding")
            pad_to = _parse_int(argument, "padding length") if argument else None
        elif name == "custom" and argument:
            cells.extend(_load_blocked_cells(Path(argument)))
        else:
            raise InvalidSetting(
                f"unknown mask {part!r}; use none, causal, window:W, padding[:N] or custom:FILE.npy")
    return MaskSpec(tuple(kinds), width, pad_to, tuple(cells))


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidSetting(f"{what} must be an integer, got {text!r}") from None


def _load_blocked_cells(path: Path) -> list[tuple[int, int]]:
    """The (query, key) cells a custom mask file blocks."""
    allowed = load_custom_mask(path)
    return [tuple(cell) for cell in np.argwhere(~allowed).tolist()]


def load_custom_mask(path: Path) -> np.ndarray:
    """A custom mask file as a bool (n_q, n_k) matrix: a .npy bool (or 0/1 integer) array, True/1 = allowed.

    Everything else is refused in one sentence: other files, other dtypes, values other than 0 and 1,
    empty or non-2-D arrays, and masks larger than the longest sequence a model takes.
    """
    from attnstudio.fileio import read_regular_file  # noqa: PLC0415 - fileio is not part of core

    try:
        payload = read_regular_file(path, LIMITS["mask_file_bytes"].high, "custom mask file (.npy)")
    except FileReadError as error:
        raise InvalidSetting(str(error)) from None
    allowed = _mask_array(path, payload)
    if allowed.ndim != 2 or allowed.size == 0:
        raise InvalidSetting(f"custom mask {path.name} must be a non-empty 2-D matrix (n_q, n_k), got shape "
                             f"{allowed.shape}")
    side = LIMITS["mask_side"].high
    if max(allowed.shape) > side:
        raise InvalidSetting(f"custom mask {path.name} is {allowed.shape[0]}x{allowed.shape[1]}; "
                             f"a mask has at most {side} rows and columns")
    if allowed.dtype != np.bool_:
        if allowed.dtype.kind not in "iu" or not np.isin(allowed, (0, 1)).all():
            raise InvalidSetting(f"custom mask {path.name} must hold booleans or 0/1 integers, got "
                                 f"{allowed.dtype} values" if allowed.dtype.kind not in "iu" else
                                 f"custom mask {path.name} must hold only 0 and 1")
    return allowed.astype(bool)


def _mask_array(path: Path, payload: bytes) -> np.ndarray:
    if not payload.startswith(b"\x93NUMPY"):
        kind = "a .npz archive" if payload.startswith(b"PK") else "empty" if not payload else "not a .npy array"
        raise InvalidSetting(f"custom mask {path.name} is {kind}; save one matrix with numpy.save(FILE.npy, mask)")
    try:
        buffer = io.BytesIO(payload)
        allowed = np.load(buffer, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InvalidSetting(f"cannot read custom mask {path.name}: {str(error)[:120]}") from None
    if not isinstance(allowed, np.ndarray) or allowed.dtype.fields is not None or allowed.dtype.kind not in "biu":
        dtype = getattr(allowed, "dtype", type(allowed).__name__)
        raise InvalidSetting(f"custom mask {path.name} must hold booleans or 0/1 integers, got {dtype} values")
    return allowed


def build_mask(spec: MaskSpec, n_q: int, n_k: int, *, valid_keys: int | None = None, xp=np):
    """The boolean (n_q, n_k) mask for ``spec`` (the AND of every part), or None when nothing is masked."""
    parts = []
    if spec.has("causal"):
        parts.append(causal_mask(n_q, n_k, xp))
    if spec.has("window"):
        parts.append(sliding_window_mask(n_q, n_k, spec.width, xp))
    if spec.has("padding") and valid_keys is not None and valid_keys < n_k:
        parts.append(padding_mask(n_q, n_k, valid_keys, xp))
    if spec.blocked_cells:
        parts.append(cells_mask(n_q, n_k, spec.blocked_cells, xp))
    if not parts:
        return None
    mask = parts[0]
    for part in parts[1:]:
        mask = xp.logical_and(mask, part)  # a key is visible only where every part allows it
    return mask
