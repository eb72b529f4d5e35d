"""The limits of every setting and every input: one table read by the session, the widgets and the CLI.

A value inside its limit is safe everywhere: the session accepts it, the widget can show it, and a
compute at the limit stays interactive (a synthetic model at the largest width computes in well under
two seconds on a laptop). Nothing here imports Qt or NumPy.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from attnstudio.errors import InvalidSetting


@dataclass(frozen=True)
class Limit:
    """An inclusive range of an integer or a float, with the name a message uses."""

    low: int | float
    high: int | float
    what: str
    decimals: int = 0  # floats: the digits a widget shows (the low end must be visible)

    @property
    def is_float(self) -> bool:
        return isinstance(self.low, float) or isinstance(self.high, float)

    def describe(self) -> str:
        kind = "a number" if self.is_float else "an integer"
        return f"{self.what} must be {kind} from {self.low:g} to {self.high:g}" if self.is_float else \
            f"{self.what} must be {kind} from {self.low} to {self.high}"

    def check(self, value):
        """``value`` (int or float) if it lies inside the limit, else InvalidSetting saying what is allowed."""
        if isinstance(value, bool) or not _is_number(value, allow_float=self.is_float):
            raise InvalidSetting(f"{self.describe()}, got {_shown(value)}")
        if self.is_float and not math.isfinite(float(value)):
            raise InvalidSetting(f"{self.describe()}, got {_shown(value)}")
        if not self.low <= value <= self.high:
            raise InvalidSetting(f"{self.describe()}, got {_shown(value)}")
        return float(value) if self.is_float else int(value)


def _is_number(value, *, allow_float: bool) -> bool:
    return isinstance(value, numbers.Integral) or allow_float and isinstance(value, numbers.Real)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


LIMITS: dict[str, Limit] = {
    # what a session holds (and the control panel's widgets show)
    "heads": Limit(1, 64, "heads"),
    "d_k": Limit(1, 512, "d_k"),
    "d_model": Limit(1, 2048, "d_model"),
    "synthetic_width": Limit(1, 2048, "heads × d_k"),  # each synthetic projection is (d_model, heads * d_k)
    "seed": Limit(0, 2**31 - 1, "seed"),  # a signed 32-bit int: every spin box and every RNG takes it
    "temperature": Limit(0.001, 1000.0, "temperature", decimals=3),
    "window": Limit(0, 1024, "window width"),
    "pad_to": Limit(1, 512, "padding length"),
    "layer": Limit(0, 1023, "layer"),
    "head": Limit(0, 1023, "head"),
    "token_index": Limit(0, 100_000, "token position"),  # a cell's query or key (the text's limit bounds them)
    "text_characters": Limit(0, 100_000, "text length"),
    "blocked_cells": Limit(0, 1024 * 1024, "number of blocked mask cells"),
    "mask_side": Limit(1, 1024, "custom mask side"),  # a custom mask is at most this many rows and columns
    # a profiler sweep (the CLI's `profile`, the profiler panel and saved sweeps)
    "profile_length": Limit(1, 1_048_576, "sequence length"),
    "profile_heads": Limit(1, 256, "heads"),
    "profile_d_k": Limit(1, 4096, "d_k"),
    "profile_repeats": Limit(1, 1000, "repeats"),
    "profile_window": Limit(0, 1 << 20, "window"),
    # files read
    "session_file_bytes": Limit(0, 8 * 1024 * 1024, "session file size"),
    "mask_file_bytes": Limit(0, 64 * 1024 * 1024, "custom mask file size"),
    "profile_points": Limit(0, 2_000, "number of profiler points"),
    # outputs
    "export_scale": Limit(0.25, 8.0, "--scale", decimals=2),  # 8× of 1200x800 is 9600x6400 pixels
}


def check(name: str, value):
    """``value`` checked against the limit called ``name`` (see :data:`LIMITS`)."""
    return LIMITS[name].check(value)
