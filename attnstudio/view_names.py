"""The names of the app's views, in tab order: one list that the CLI, the exporters and the Qt views share.

Qt-free, so the CLI can offer ``export --view`` choices without importing Qt.
"""
from __future__ import annotations

VIEW_NAMES = ("heatmap", "heads", "pipeline", "lines", "rollout", "why", "compare", "next_token", "logit_lens",
              "position_bias", "profiler")
# Views an image export can render from one result (the profiler draws its own measurements).
EXPORT_VIEWS = tuple(name for name in VIEW_NAMES if name != "profiler")
