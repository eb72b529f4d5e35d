"""Views without a main window, and the finished figures of a session for ``attnstudio.export``.

The ui builds and drives its views (theme, session model, head by head); export only writes the
widgets it is handed, with the captions that describe them. So export never imports ui.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtWidgets import QApplication

from attnstudio.core.profiling import ProfileResult
from attnstudio.engine import Engine
from attnstudio.errors import FileWriteError
from attnstudio.export.session_export import Figure, caption_for, export_session, profile_caption
from attnstudio.session import Session
from attnstudio.ui.result_model import ResultModel
from attnstudio.ui.session_model import SessionModel
from attnstudio.ui.theme import apply_theme
from attnstudio.ui.views import VIEW_CLASSES
from attnstudio.view_names import VIEW_NAMES


def offscreen_views(session: Session, size: tuple[int, int] = (1200, 800)):
    """Build the session's views without a main window, compute once, and lay them out for export.

    Returns (views, session_model, results). Needs a QApplication (offscreen is fine).
    """
    # Compute first: a session that cannot be computed (its model is gone, say) raises before any view exists,
    # rather than leave fourteen views and their worker threads behind in the calling process.
    result = Engine().compute(session)
    result.precompute_views()  # as the app's worker does (a long document's first summaries among them)
    apply_theme("light")
    session_model = SessionModel(session)
    results = ResultModel(session_model)
    views = {}
    for name, view_class in VIEW_CLASSES.items():
        view = view_class(session_model) if name == "profiler" else view_class(session_model, results)
        view.resize(*size)
        view.show()
        views[name] = view
    results.set_result(result)
    for _ in range(3):
        QApplication.processEvents()
    return views, session_model, results


def session_figures(views: dict, session_model: SessionModel, results: ResultModel) -> list[Figure]:
    """Each exported view as a finished figure whose caption describes what it draws.

    The attention views carry the shown result's caption; the profiler (only with a sweep) carries its
    sweep's: kernels, lengths, backend, dtype, heads, d_k.
    """
    if results.result is None:
        raise FileWriteError("nothing to export yet: the first compute has not finished")
    figures = []
    for name in VIEW_NAMES:
        if name not in views:
            continue
        if name == "profiler":
            profile = session_model.session.profile
            if not profile:
                continue
            try:
                caption = profile_caption(ProfileResult.from_json_dict(profile))
            except (KeyError, TypeError, ValueError):
                continue  # unreadable saved results: the view shows no sweep either
        else:
            caption = caption_for(results.shown, results.result, name)
        figures.append(Figure(name, views[name].export_target(), caption))
    return figures


def head_figures(views: dict, session_model: SessionModel, results: ResultModel) -> Iterator[Figure]:
    """The heatmap once per head of the shown layer, each with its own caption; the user's head is put back."""
    heatmap = views["heatmap"]
    users_head = session_model.session.head  # put back as it was, not as it was clamped
    try:
        for head in range(results.result.heads):
            session_model.update(head=head)
            yield Figure(f"head{head + 1:02d}", heatmap.export_target(), caption_for(results.shown, results.result))
    finally:
        session_model.update(head=users_head)


def export_views(views: dict, session_model: SessionModel, results: ResultModel, out_dir: Path,
                 progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Export the whole session shown by ``views`` into ``out_dir`` (see ``export_session``)."""
    figures = session_figures(views, session_model, results)
    shown = dataclasses.replace(results.shown, profile=session_model.session.profile)  # the pictures' settings, saved
    return export_session(figures, head_figures(views, session_model, results), results.result, shown,
                          Path(out_dir), progress)
