"""The app's views; each takes the session model (and the result model) it shows."""
from attnstudio.ui.views.compare import CompareView
from attnstudio.ui.views.heads import HeadsView
from attnstudio.ui.views.heatmap import HeatmapView
from attnstudio.ui.views.lines import LinesView
from attnstudio.ui.views.logit_lens import LogitLensView
from attnstudio.ui.views.next_token import NextTokenView
from attnstudio.ui.views.pipeline import PipelineView
from attnstudio.ui.views.position_bias import PositionBiasView
from attnstudio.ui.views.profiler import ProfilerView
from attnstudio.ui.views.rollout import RolloutView
from attnstudio.ui.views.why import WhyView

# Tab order in the main window; the profiler takes only the session model.
VIEW_CLASSES = {"heatmap": HeatmapView, "heads": HeadsView, "pipeline": PipelineView, "lines": LinesView,
                "rollout": RolloutView, "why": WhyView, "compare": CompareView, "next_token": NextTokenView,
                "logit_lens": LogitLensView, "position_bias": PositionBiasView, "profiler": ProfilerView}
VIEW_LABELS = {"heatmap": "Heatmap", "heads": "Heads", "pipeline": "Pipeline", "lines": "Lines",
               "rollout": "Rollout", "why": "Why this score", "compare": "Compare", "next_token": "Next token",
               "logit_lens": "Logit lens", "position_bias": "Position bias", "profiler": "Profiler"}
