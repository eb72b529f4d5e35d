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
from attnstudio.core.kernels import SCORE_FUNCTIONS
from attnstudio.core.backend import BACKEND_NAMES
from attnstudio.core.display import COLOR_SCALES
from attnstudio.core.masks import MaskSpec
from attnstudio.core.synthetic import LIMITS, check_synthetic_setting
from attnstudio.errors import InvalidSetting, SessionFileError
from attnstudio.fileio import write_atomic

FORMAT_VERSION = 2  # 2: the mask holds several parts ("kinds"); colour scale and hide-special fields
SESSION_SUFFIX = ".attnsession"
DEFAULT_TEXT = "The cat sat on the mat because it was tired."
SYNTHETIC = "synthetic"
MAX_TEXT_CHARACTERS = 100_000
TEMPERATURE_RANGE = (1e-3, 1e3)
MAX_WORD_CHARACTERS = 100


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

    @property
    def is_synthetic(self) -> bool:
        return self.model == SYNTHETIC

    @property
    def is_cross_attention(self) -> bool:
        return bool(self.pair_text.strip())

    def validate(self) -> "Session":
        """Raise InvalidSetting with a readable sentence for the first bad field."""
        for name in ("text", "pair_text", "model", "score", "backend", "view", "color_scale", "compare_text",
                     "compare_word"):
            if not isinstance(getattr(self, name), str):
                raise InvalidSetting(f"{name} must be text")
        if not self.text.strip():
            raise InvalidSetting("the text is empty: type a sentence")
        if max(len(self.text), len(self.pair_text), len(self.compare_text)) > MAX_TEXT_CHARACTERS:
            raise InvalidSetting(f"the text is longer than {MAX_TEXT_CHARACTERS:,} characters")
        if self.score not in SCORE_FUNCTIONS:
            raise InvalidSetting(f"unknown score function {self.score!r}; choose one of {', '.join(SCORE_FUNCTIONS)}")
        if self.backend not in BACKEND_NAMES:
            raise InvalidSetting(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
        if not isinstance(self.mask, MaskSpec):
            raise InvalidSetting("mask must be a MaskSpec")
        if not isinstance(self.ablation, Ablation):
            raise InvalidSetting("ablation must be an Ablation")
        if len(self.compare_word) > MAX_WORD_CHARACTERS:
            raise InvalidSetting(f"the compared word is longer than {MAX_WORD_CHARACTERS} characters")
        if self.color_scale not in COLOR_SCALES:
            raise InvalidSetting(f"unknown colour scale {self.color_scale!r}; choose one of {', '.join(COLOR_SCALES)}")
        if not isinstance(self.hide_special, bool):
            raise InvalidSetting("hide_special must be true or false")
        temperature = self.temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
                or not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
            raise InvalidSetting(f"temperature must be a number from {TEMPERATURE_RANGE[0]} to {TEMPERATURE_RANGE[1]}")
        if self.heads is not None:
            check_synthetic_setting("heads", self.heads)
        for name in ("d_k", "d_model", "seed"):
            check_synthetic_setting(name, getattr(self, name))
        if not isinstance(self.cell, tuple) or len(self.cell) != 2 or not all(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in self.cell):
            raise InvalidSetting(f"cell must be a (query, key) pair of integers >= 0, got {self.cell!r}")
        for name in ("layer", "head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidSetting(f"{name} must be an integer >= 0, got {value!r}")
        return self

    # --- JSON -------------------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mask"] = self.mask.to_json_dict()
        data["ablation"] = {"heads": [list(pair) for pair in self.ablation.heads], "mode": self.ablation.mode}
        return {"format": "attnstudio-session", "version": FORMAT_VERSION, "session": data}

    @classmethod
    def from_json_dict(cls, document: Any) -> "Session":
        """Build a session from parsed JSON; unknown fields are ignored with a warning."""
        if not isinstance(document, dict) or document.get("format") != "attnstudio-session":
            raise SessionFileError("this is not an attnstudio session file")
        version = document.get("version")
        if not isinstance(version, int) or version < 1:
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
            warnings.warn(f"session file: ignoring unknown field(s) {', '.join(unknown)}", stacklevel=2)
        values = {name: value for name, value in data.items() if name in known}
        try:
            if "mask" in values:
                mask = values["mask"]
                if not isinstance(mask, dict):
                    raise InvalidSetting("mask must be an object")
                values["mask"] = _mask_from_json(mask, version)
            if "ablation" in values:
                ablation = values["ablation"]
                if not isinstance(ablation, dict) or not isinstance(ablation.get("heads", []), list):
                    raise InvalidSetting("ablation must be an object with a list of heads")
                values["ablation"] = Ablation(heads=tuple(tuple(pair) if isinstance(pair, list) else pair
                                                          for pair in ablation.get("heads", [])),
                                              mode=ablation.get("mode", "zero"))
            if isinstance(values.get("cell"), list):
                values["cell"] = tuple(values["cell"])
            if "profile" in values and not isinstance(values["profile"], dict):
                raise InvalidSetting("profile must be an object")
            return cls(**values).validate()
        except (InvalidSetting, TypeError, ValueError) as error:
            raise SessionFileError(f"the session file has an invalid setting: {error}") from None

    def save(self, path: str | Path) -> None:
        """Write atomically: the old file stays intact until the new one is complete."""
        write_atomic(Path(path), json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> "Session":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except IsADirectoryError:
            raise SessionFileError(f"{path} is a folder, not a session file") from None
        except OSError as error:
            raise SessionFileError(f"cannot read {path}: {error.strerror or error}") from None
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SessionFileError(f"{path.name} is damaged or truncated (not valid JSON)") from None
        return cls.from_json_dict(document)


def _mask_from_json(mask: dict, version: int) -> MaskSpec:
    """Format 1 kept one mask kind ("kind": "causal"); format 2 keeps every part ("kinds": ["causal", "window"])."""
    kinds = mask.get("kind", "none") if version < 2 else mask.get("kinds", [])
    if not isinstance(kinds, (str, list)):
        raise InvalidSetting("mask kinds must be a list of names")
    return MaskSpec(kinds=kinds, width=mask.get("width", 2), pad_to=mask.get("pad_to"),
                    blocked_cells=tuple(tuple(c) for c in mask.get("blocked_cells", [])))


__all__ = ["Session", "write_atomic", "FORMAT_VERSION", "SESSION_SUFFIX", "DEFAULT_TEXT", "SYNTHETIC", "LIMITS"]
