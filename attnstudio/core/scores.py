"""The score functions: one table that the kernels, the session's validation, the CLI's choices, the
control panel's menu, the pipeline view's formula and the export captions all read.

Qt-free plain data, so the CLI and the exporters can use it without the UI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreFunction:
    name: str  # the session's and the CLI's value
    label: str  # the control panel's menu entry
    caption: str  # in export captions and reports ("score: scaled dot product")
    formula: str  # the pipeline view's formula; {d_k} is filled in
    scaled: bool  # raw scores are multiplied by 1/sqrt(d_k)

    def scale(self, d_k: int) -> float:
        """The factor applied to raw scores before the temperature."""
        return 1.0 / math.sqrt(d_k) if self.scaled else 1.0


SCORES: dict[str, ScoreFunction] = {score.name: score for score in (
    ScoreFunction("scaled_dot", "Scaled dot product  QKᵀ/√d_k", "scaled dot product", "Q Kᵀ / √{d_k}", True),
    ScoreFunction("dot", "Dot product  QKᵀ (no scaling)", "dot product", "Q Kᵀ", False),
    ScoreFunction("additive", "Additive (Bahdanau)", "additive", "v_aᵀ tanh(W_q q + W_k k)", False),
)}
SCORE_FUNCTIONS = tuple(SCORES)
