"""The app's views; each takes the session model (and the result model) it shows."""
from attnstudio.ui.views.compare import CompareView
from attnstudio.ui.views.heads import HeadsView
from attnstudio.ui.views.heatmap import HeatmapView
from attnstudio.ui.views.lines import LinesView
from attnstudio.ui.views.logit_lens import LogitLensView
from attnstudio.ui.views.next_token import NextTokenView
from attnstudio.ui.views.pipeline import PipelineView
from attnstudio.ui.views.profiler import ProfilerView
from attnstudio.ui.views.rollout import RolloutView
from attnstudio.ui.views.why import WhyView
from attnstudio.view_names import VIEW_LABELS, VIEW_NAMES

# The Qt class of each view in attnstudio.view_names, in its (tab) order; the profiler takes only the session model.
_CLASSES = {"heatmap": HeatmapView, "heads": HeadsView, "pipeline": PipelineView, "lines": LinesView,
            "rollout": RolloutView, "why": WhyView, "compare": CompareView, "next_token": NextTokenView,
            "logit_lens": LogitLensView, "profiler": ProfilerView}
VIEW_CLASSES = {name: _CLASSES[name] for name in VIEW_NAMES}  # a view without a class fails here, at import
__all__ = ["VIEW_CLASSES", "VIEW_LABELS"]
