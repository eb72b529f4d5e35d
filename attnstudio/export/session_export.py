"""Whole-session exports: every view as PNG and SVG, per-head images, raw weights, the session file
and an HTML report; plus building the views offscreen for the ``attnstudio export`` command."""
from __future__ import annotations

import csv
import dataclasses
import html
import io
from pathlib import Path
from typing import Callable

import numpy as np

from attnstudio.core.display import describe_display
from attnstudio.engine import ComputeResult, mask_caption
from attnstudio.errors import FileWriteError
from attnstudio.export.images import export_view
from attnstudio.fileio import write_atomic
from attnstudio.session import SESSION_SUFFIX, Session
from attnstudio.view_names import VIEW_NAMES

SCORE_NAMES = {"scaled_dot": "scaled dot product", "dot": "dot product", "additive": "additive"}


def caption_for(shown: Session, result: ComputeResult) -> str:
    """One line that lets a figure stand alone: model, layer, head, mask, score, temperature, colour scale.

    ``shown`` is the result model's ``shown`` settings: the result's own session with the layer and head
    on screen (already clamped to the result), so the caption always describes the picture.
    """
    pair = f" · cross-attention ({len(result.key_tokens)} keys)" if result.cross_attention else ""
    if shown.ablation:
        pair += f" · ablation: {shown.ablation.describe()}"
    if result.compare is not None:
        pair += f" · compared with: {shown.compare_text!r}"
    return (f"attnstudio · model {result.model_name} · layer {shown.layer + 1}/{result.num_layers} · head "
            f"{shown.head + 1}/{result.heads} (d_k {result.d_k}) · mask: {mask_caption(result, shown.mask)} · score: "
            f"{SCORE_NAMES[shown.score]} · temperature {shown.temperature:g} · "
            f"{describe_display(shown.color_scale, shown.hide_special)}{pair}{truncation_note(result)}")


def truncation_note(result: ComputeResult) -> str:
    """" · text cut to 512 tokens" when the model could not take the whole text (the compute's notices say so)."""
    notes = []
    for notice in result.notices:
        if "truncated" in notice:
            cross = "second text" in notice
            kept = len(result.key_tokens) if cross else len(result.query_tokens)
            notes.append(f" · {'second text' if cross else 'text'} cut to {kept} tokens")
    return "".join(notes)


def weights_csv(result: ComputeResult, layer: int, head: int) -> bytes:
    """One head's (n_q, n_k) weights with token headers (duplicate tokens keep their positions)."""
    weights = result.attentions()[layer, head]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["query \\ key"] + [f"{j}:{token}" for j, token in enumerate(result.key_tokens)])
    for i, token in enumerate(result.query_tokens):
        writer.writerow([f"{i}:{token}"] + [f"{value:.8g}" for value in weights[i]])
    return buffer.getvalue().encode("utf-8")


def weights_npy(result: ComputeResult) -> bytes:
    """All weights, (layers, heads, n_q, n_k) float32, as a .npy file (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, result.attentions(), allow_pickle=False)
    return buffer.getvalue()


def export_session(views: dict, session_model, results, out_dir: Path,
                   progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write every view (PNG + SVG), the selected layer's heads one by one, weights, session and report."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FileWriteError(f"cannot create {out_dir}: {error.strerror or error}") from None
    result = results.result
    if result is None:
        raise FileWriteError("nothing to export yet: the first compute has not finished")
    session = results.shown  # the settings of the pictures, whatever is being edited meanwhile
    caption = caption_for(session, result)
    names = [name for name in VIEW_NAMES if name in views and (name != "profiler" or session_model.profile)]
    layer, selected_head = session.layer, session.head
    total = 2 * len(names) + result.heads + 4
    written: list[Path] = []

    def step(label: str, path: Path) -> None:
        written.append(path)
        if progress is not None:
            progress(len(written), total, label)

    for name in names:
        target = views[name].export_target()
        for suffix in (".png", ".svg"):
            step(f"{name}{suffix}", export_view(target, out_dir / f"{name}{suffix}", caption=caption))
    heads_dir = out_dir / f"layer{layer + 1}_heads"
    try:
        heads_dir.mkdir(exist_ok=True)
    except FileExistsError:
        raise FileWriteError(f"cannot create the folder {heads_dir}: a file of that name is in the way") from None
    except OSError as error:
        raise FileWriteError(f"cannot create the folder {heads_dir}: {error.strerror or error}") from None
    heatmap = views["heatmap"]
    users_head = session_model.head  # put back as it was, not as it was clamped
    try:
        for head in range(result.heads):
            session_model.update(head=head)
            step(f"head {head + 1}", export_view(heatmap.export_target(), heads_dir / f"head{head + 1:02d}.png",
                                                 caption=caption_for(results.shown, result)))
    finally:
        session_model.update(head=users_head)
    write_atomic(out_dir / "weights.npy", weights_npy(result))
    step("weights.npy", out_dir / "weights.npy")
    write_atomic(out_dir / f"weights_layer{layer + 1}_head{selected_head + 1}.csv",
                 weights_csv(result, layer, selected_head))
    step("weights.csv", out_dir / f"weights_layer{layer + 1}_head{selected_head + 1}.csv")
    session_path = out_dir / f"session{SESSION_SUFFIX}"
    dataclasses.replace(session, profile=session_model.profile).save(session_path)
    step("session", session_path)
    report = out_dir / "report.html"
    write_atomic(report, _report_html(session, result, caption, names, heads_dir.name).encode("utf-8"))
    step("report", report)
    return written


def _report_html(session: Session, result: ComputeResult, caption: str, names: list[str], heads_dir: str) -> str:
    settings = {
        "text": session.text, "second text (keys/values)": session.pair_text or "—", "model": result.model_name,
        "heads": result.heads, "d_k": result.d_k, "score": SCORE_NAMES[session.score],
        "temperature": session.temperature, "mask": mask_caption(result, session.mask),
        "backend": result.backend.description, "colour": describe_display(session.color_scale, session.hide_special),
        "tokens": " ".join(result.query_tokens), "compute time": f"{result.elapsed_s * 1000:.1f} ms",
    }
    if result.notices:
        settings["notices"] = " ".join(result.notices)
    if session.is_synthetic:
        settings.update({"d_model": session.d_model, "seed": session.seed})
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    figures = "".join(f'<figure><img src="{name}.png" alt="{name}"><figcaption>{name} — '
                      f'<a href="{name}.svg">SVG</a></figcaption></figure>' for name in names)
    heads = "".join(f'<img class="head" src="{heads_dir}/head{h + 1:02d}.png" alt="head {h + 1}">'
                    for h in range(result.heads))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>attnstudio report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
th{{text-align:left;padding-right:1em;vertical-align:top}} img{{max-width:100%;border:1px solid #ddd}}
img.head{{width:32%;margin:0.3%}} figure{{margin:1.5em 0}}</style></head>
<body><h1>attnstudio report</h1><p>{html.escape(caption)}</p>
<table>{rows}</table>{figures}<h2>Every head of the selected layer</h2>{heads}
<p>Raw data: <a href="weights.npy">weights.npy</a> (layers, heads, n_q, n_k), the selected head as CSV,
and the <a href="session{SESSION_SUFFIX}">session file</a> to reopen all of this in attnstudio.</p>
</body></html>
"""


def offscreen_views(session: Session, size: tuple[int, int] = (1200, 800)):
    """Build the session's views without a main window, compute once, and lay them out for export.

    Returns (views, session_model, results). Needs a QApplication (offscreen is fine).
    """
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    from attnstudio.engine import Engine  # noqa: PLC0415
    from attnstudio.ui.result_model import ResultModel  # noqa: PLC0415
    from attnstudio.ui.session_model import SessionModel  # noqa: PLC0415
    from attnstudio.ui.theme import apply_theme  # noqa: PLC0415
    from attnstudio.ui.views import VIEW_CLASSES  # noqa: PLC0415

    apply_theme("light")
    session_model = SessionModel(session)
    results = ResultModel(session_model)
    views = {}
    for name, view_class in VIEW_CLASSES.items():
        view = view_class(session_model) if name == "profiler" else view_class(session_model, results)
        view.resize(*size)
        view.show()
        views[name] = view
    results.set_result(Engine().compute(session))
    for _ in range(3):
        QApplication.processEvents()
    return views, session_model, results
