"""The names of the app's views, in tab order: one list that the CLI, the exporters and the Qt views share.

Qt-free, so the CLI can offer ``export --view`` choices without importing Qt.
"""
from __future__ import annotations

# name (the session's `view`, the CLI's `--view`) -> the tab's label
VIEW_LABELS = {"heatmap": "Heatmap", "heads": "Heads", "pipeline": "Pipeline", "lines": "Lines",
               "rollout": "Rollout", "why": "Why this score", "compare": "Compare", "next_token": "Next token",
               "logit_lens": "Logit lens", "profiler": "Profiler"}
VIEW_NAMES = tuple(VIEW_LABELS)
# Views an image export can render from one result (the profiler draws its own measurements).
EXPORT_VIEWS = tuple(name for name in VIEW_NAMES if name != "profiler")
