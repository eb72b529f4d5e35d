"""The state a user edits: one validated dataclass, saved as versioned JSON.

The Qt layer wraps a :class:`Session` in a model that emits a signal per field;
the CLI builds one from its options. No pickle: a session file is plain JSON,
written atomically (write a temporary file, then rename over the old one).
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnstudio.core.ablation import Ablation
from attnstudio.core.backend import BACKEND_NAMES
from attnstudio.core.display import COLOR_SCALES
from attnstudio.core.masks import MaskSpec
from attnstudio.core.profiling import ProfileResult
from attnstudio.core.scores import SCORE_FUNCTIONS
from attnstudio.core.synthetic import check_synthetic_setting, check_synthetic_width
from attnstudio.errors import InvalidSetting, SessionFileError
from attnstudio.fileio import format_size as _size
from attnstudio.fileio import read_regular_file, write_atomic
from attnstudio.limits import LIMITS, check

FORMAT_VERSION = 2  # 2: the mask holds several parts ("kinds"); colour scale and hide-special fields
SESSION_SUFFIX = ".attnsession"
DEFAULT_TEXT = "The cat sat on the mat because it was tired."
SYNTHETIC = "synthetic"
MAX_TEXT_CHARACTERS = LIMITS["text_characters"].high
MAX_NAME_CHARACTERS = 4096  # a model folder path or a view name
MAX_WORD_CHARACTERS = 100  # the word the Compare view follows
MAX_INT_DIGITS = 20  # every integer setting fits in 64 bits; longer ones are refused before int() parses them
STRING_FIELDS = ("text", "pair_text", "model", "score", "backend", "view", "color_scale", "compare_text",
                 "compare_word")


@dataclass
class Session:
    """Everything that decides what the app computes and shows."""

    text: str = DEFAULT_TEXT
    pair_text: str = ""  # non-empty: cross-attention, queries from text, keys/values from pair_text
    model: str = "minilm"  # "minilm", "synthetic" or a model folder
    heads: int | None = None  # None: the pretrained model's own head count
    d_k: int = 16  # synthetic only; pretrained d_k is d_model / heads
    d_model: int = 64  # synthetic only
    seed: int = 0
    score: str = "scaled_dot"
    temperature: float = 1.0  # divides the scores: < 1 sharpens, > 1 flattens
    mask: MaskSpec = field(default_factory=MaskSpec)
    backend: str = "auto"
    color_scale: str = "unit"  # one of core.display.COLOR_SCALES; 0–1, as every format-1 file was drawn
    hide_special: bool = False  # hide [CLS], [SEP], BOS… and renormalise the rows
    layer: int = 0
    head: int = 0
    view: str = "heatmap"
    profile: dict = field(default_factory=dict)  # the profiler's last results, kept with the session
    compare_text: str = ""  # text B of the Compare view: the same settings run on it beside text A
    compare_word: str = ""  # the word followed in both texts ("" = the first word they share)
    ablation: Ablation = field(default_factory=Ablation)  # heads switched off in every compute
    cell: tuple[int, int] = (0, 0)  # (query, key) explained by "Why this score" and ranked by the head finder

    def __post_init__(self):
        # A lone UTF-16 surrogate (pasted, or JSON "\\ud800") cannot be written as UTF-8: replace it on input,
        # so saving and autosaving can never fail over one character.
        for name in STRING_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and has_lone_surrogates(value):
                setattr(self, name, replace_lone_surrogates(value)[0])

    @property
    def is_synthetic(self) -> bool:
        return self.model == SYNTHETIC

    @property
    def is_cross_attention(self) -> bool:
        return bool(self.pair_text.strip())

    def validate(self) -> Session:
        """Raise InvalidSetting with a readable sentence for the first bad field.

        A session that passes is safe everywhere: every value lies inside :data:`attnstudio.limits.LIMITS`,
        which the widgets and the CLI share, so restoring it can never stop the app from starting.
        """
        for name in STRING_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidSetting(f"{name} must be text")
            if has_lone_surrogates(value):
                raise InvalidSetting(f"the {name.replace('_', ' ')} holds characters that cannot be saved "
                                     f"(lone UTF-16 surrogates); retype or paste it again")
        if not self.text.strip():
            raise InvalidSetting("the text is empty: type a sentence")
        most = LIMITS["text_characters"].high
        if max(len(self.text), len(self.pair_text), len(self.compare_text)) > most:
            raise InvalidSetting(f"the text is longer than {most:,} characters")
        if len(self.model) > MAX_NAME_CHARACTERS or len(self.view) > MAX_NAME_CHARACTERS:
            raise InvalidSetting(f"model and view names must be at most {MAX_NAME_CHARACTERS} characters")
        if self.score not in SCORE_FUNCTIONS:
            raise InvalidSetting(f"unknown score function {self.score!r:.60}; "
                                 f"choose one of {', '.join(SCORE_FUNCTIONS)}")
        if self.backend not in BACKEND_NAMES:
            raise InvalidSetting(f"unknown backend {self.backend!r:.60}; choose one of {', '.join(BACKEND_NAMES)}")
        if not isinstance(self.mask, MaskSpec):
            raise InvalidSetting("mask must be a MaskSpec")
        check_mask_limits(self.mask)
        if not isinstance(self.ablation, Ablation):
            raise InvalidSetting("ablation must be an Ablation")
        for layer, head in self.ablation.heads:
            check("layer", layer)
            check("head", head)
        if len(self.compare_word) > MAX_WORD_CHARACTERS:
            raise InvalidSetting(f"the compared word is longer than {MAX_WORD_CHARACTERS} characters")
        if self.color_scale not in COLOR_SCALES:
            raise InvalidSetting(f"unknown colour scale {self.color_scale!r:.60}; "
                                 f"choose one of {', '.join(COLOR_SCALES)}")
        if not isinstance(self.hide_special, bool):
            raise InvalidSetting("hide_special must be true or false")
        check("temperature", self.temperature)
        if self.heads is not None:
            check_synthetic_setting("heads", self.heads)
        for name in ("d_k", "d_model", "seed", "layer", "head"):
            check(name, getattr(self, name))
        if self.is_synthetic:
            check_synthetic_width(self.heads or 4, self.d_k)
        if not isinstance(self.cell, tuple) or len(self.cell) != 2 or not all(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in self.cell):
            raise InvalidSetting(f"cell must be a (query, key) pair of integers >= 0, got {_short(repr(self.cell))}")
        for value in self.cell:
            check("token_index", value)
        if not isinstance(self.profile, dict):
            raise InvalidSetting("profile must be an object")
        if self.profile:
            ProfileResult.from_json_dict(self.profile, max_points=LIMITS["profile_points"].high)
        return self

    # --- JSON -------------------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mask"] = self.mask.to_json_dict()
        data["ablation"] = {"heads": [list(pair) for pair in self.ablation.heads], "mode": self.ablation.mode}
        return {"format": "attnstudio-session", "version": FORMAT_VERSION, "session": data}

    @classmethod
    def from_json_dict(cls, document: Any) -> Session:
        """Build a session from parsed JSON, checking every value; unknown fields are ignored with a warning.

        Raises SessionFileError with one sentence saying what is wrong.
        """
        if not isinstance(document, dict) or document.get("format") != "attnstudio-session":
            raise SessionFileError("this is not an attnstudio session file")
        version = document.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SessionFileError("the session file has no valid format version")
        if version > FORMAT_VERSION:
            raise SessionFileError(f"the session file was written by a newer attnstudio (format {version}; "
                                   f"this version reads up to {FORMAT_VERSION})")
        data = document.get("session")
        if not isinstance(data, dict):
            raise SessionFileError("the session file has no session data")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            shown = ", ".join(_short(name) for name in unknown[:5]) + (f" and {len(unknown) - 5} more"
                                                                      if len(unknown) > 5 else "")
            warnings.warn(f"session file: ignoring unknown field(s) {shown}", stacklevel=2)
        values = {name: value for name, value in data.items() if name in known}
        replaced = 0
        for name in STRING_FIELDS:
            if isinstance(values.get(name), str) and has_lone_surrogates(values[name]):
                values[name], count = replace_lone_surrogates(values[name])
                replaced += count
        if replaced:
            warnings.warn(f"session file: replaced {replaced} invalid character(s) (lone surrogates) with �",
                          stacklevel=2)
        try:
            if "mask" in values:
                values["mask"] = _mask_from_json(values["mask"], version)
            if "ablation" in values:
                ablation = values["ablation"]
                if not isinstance(ablation, dict) or not isinstance(ablation.get("heads", []), list):
                    raise InvalidSetting("ablation must be an object with a list of heads")
                values["ablation"] = Ablation(heads=tuple(tuple(pair) if isinstance(pair, list) else pair
                                                          for pair in ablation.get("heads", [])),
                                              mode=ablation.get("mode", "zero"))
            if isinstance(values.get("cell"), list):
                values["cell"] = tuple(values["cell"])
            return cls(**values).validate()
        except (InvalidSetting, TypeError, ValueError, OverflowError) as error:
            raise SessionFileError(f"the session file has an invalid setting: {_short(str(error), 200)}") from None

    def save(self, path: str | Path) -> None:
        """Write atomically: the old file stays intact until the new one is complete."""
        write_atomic(Path(path), self.to_json_bytes())

    def to_json_bytes(self) -> bytes:
        """The session file's bytes: UTF-8 JSON (a lone surrogate, which UTF-8 cannot hold, is escaped)."""
        text = json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # validate() refuses these; never lose work over one character
            return json.dumps(self.to_json_dict(), indent=2, ensure_ascii=True).encode("ascii")

    @classmethod
    def from_json_text(cls, text: str | bytes, name: str = "the session") -> Session:
        """Parse and check a session document (a file's bytes, or the copy kept in the app's settings)."""
        if len(text) > LIMITS["session_file_bytes"].high:
            raise SessionFileError(f"{name} is too large for a session file ({_size(len(text))}; "
                                   f"at most {_size(LIMITS['session_file_bytes'].high)})")
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                                  parse_int=_short_int)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SessionFileError(f"{name} is damaged or truncated (not valid JSON)") from None
        except RecursionError:
            raise SessionFileError(f"{name} is not a session file (its JSON is nested too deeply)") from None
        except _BadNumber as error:
            raise SessionFileError(f"{name} holds {error}, which no setting accepts") from None
        return cls.from_json_dict(document)

    @classmethod
    def load(cls, path: str | Path) -> Session:
        """Read a session file: only a regular file of at most a few MiB is read, then every value is checked."""
        path = Path(path)
        payload = read_regular_file(path, LIMITS["session_file_bytes"].high, "session file", SessionFileError)
        return cls.from_json_text(payload, path.name)


# --- checking what a file holds ------------------------------------------------------------------------------
class _BadNumber(ValueError):
    pass


def _refuse_constant(name: str):
    raise _BadNumber(f"the number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {_short(text, 24)} (too large)")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadNumber(f"an integer of {len(text.lstrip('-')):,} digits")
    return int(text)


def _mask_from_json(mask: Any, version: int) -> MaskSpec:
    """Format 1 kept one mask kind ("kind": "causal"); format 2 keeps every part ("kinds": ["causal", "window"]).

    Every value is checked before the MaskSpec is built: cells are pairs of small integers, nothing else."""
    if not isinstance(mask, dict):
        raise InvalidSetting("mask must be an object")
    kinds = mask.get("kind", "none") if version < 2 else mask.get("kinds", [])
    if not isinstance(kinds, (str, list)) or isinstance(kinds, list) and not all(isinstance(k, str) for k in kinds):
        raise InvalidSetting("mask kinds must be a list of names")
    cells = mask.get("blocked_cells", [])
    if not isinstance(cells, list):
        raise InvalidSetting("mask blocked_cells must be a list of [query, key] pairs")
    LIMITS["blocked_cells"].check(len(cells))
    side = LIMITS["mask_side"].high
    for cell in cells:
        if not (isinstance(cell, list) and len(cell) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < side for v in cell)):
            raise InvalidSetting(f"a blocked mask cell must be a pair of integers from 0 to {side - 1}, "
                                 f"got {_short(repr(cell))}")
    return MaskSpec(kinds=kinds, width=mask.get("width", 2), pad_to=mask.get("pad_to"),
                    blocked_cells=tuple(tuple(cell) for cell in cells))


def check_mask_limits(mask: MaskSpec) -> None:
    """The parts of a mask the limits table bounds (the mask checks its own kinds)."""
    check("window", mask.width)
    if mask.pad_to is not None:
        check("pad_to", mask.pad_to)
    LIMITS["blocked_cells"].check(len(mask.blocked_cells))


def has_lone_surrogates(text: str) -> bool:
    """True if ``text`` holds a UTF-16 surrogate on its own (JSON "\\ud800"), which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def replace_lone_surrogates(text: str) -> tuple[str, int]:
    """``text`` with each lone surrogate replaced by U+FFFD, and how many were replaced."""
    count = sum(1 for character in text if "\ud800" <= character <= "\udfff")
    return "".join("\ufffd" if "\ud800" <= character <= "\udfff" else character for character in text), count


def _short(text: str, most: int = 40) -> str:
    text = ascii(text) if has_lone_surrogates(text) else text
    return text if len(text) <= most else text[:most - 1] + "…"
