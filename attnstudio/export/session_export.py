"""Whole-session exports: every figure as PNG and SVG, per-head images, raw weights, the session file
and an HTML report. Takes finished figures (widgets with their captions) and results: building and driving
the views is the ui's business (``attnstudio.ui.offscreen``); export never imports ui."""
from __future__ import annotations

import csv
import dataclasses
import html
import io
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QWidget

from attnstudio.attention_kinds import ATTENTION_KINDS
from attnstudio.core.display import describe_display
from attnstudio.core.profiling import ProfileResult
from attnstudio.core.scores import SCORES
from attnstudio.engine import ComputeResult, mask_caption
from attnstudio.errors import FileWriteError
from attnstudio.export.images import export_view
from attnstudio.fileio import write_atomic
from attnstudio.session import SESSION_SUFFIX, Session

T5_SCORES = ("T5's own: q·k (no 1/√d_k; cross-attention adds no position bias)",  # what a T5 result scores with,
             "T5's own: q·k + relative position bias (no 1/√d_k)")  # without and with a position bias


# Views whose colours are not attention weights: what their colour bar shows, in the caption's words.
VIEW_COLOURS = {"position_bias": "colour: the bias added to the score, symmetric about 0 (blue below, red above)"}


def caption_for(shown: Session, result: ComputeResult, view: str | None = None) -> str:
    """One line that lets a figure stand alone: model, layer, head, mask, score, temperature, colour scale.

    ``shown`` is the result model's ``shown`` settings: the result's own session with the layer and head
    on screen (already clamped to the result), so the caption always describes the picture. ``view``: the
    exported view's name, for a view whose colours mean something else (:data:`VIEW_COLOURS`).
    """
    pair = f" · cross-attention ({len(result.key_tokens)} keys)" if result.cross_attention else ""
    score = SCORES[shown.score].caption
    if result.attention_kind is not None:  # encoder-decoder: which text each axis holds; T5's own score
        kind = ATTENTION_KINDS[result.attention_kind]
        pair = (f" · rows: {len(result.query_tokens)} {kind.rows} tokens, columns: {len(result.key_tokens)} "
                f"{kind.columns} tokens")
        score = T5_SCORES[result.position_bias is not None]
    if shown.ablation:
        pair += f" · ablation: {shown.ablation.describe()}"
    if result.compare is not None:
        pair += f" · compared with: {shown.compare_text!r}"
    return (f"attnstudio · model {result.model_name} · layer {shown.layer + 1}/{result.num_layers} · head "
            f"{shown.head + 1}/{result.heads} (d_k {result.d_k}) · mask: {mask_caption(result, shown.mask)} · score: "
            f"{score} · temperature {shown.temperature:g} · "
            f"{VIEW_COLOURS.get(view) or describe_display(shown.color_scale, shown.hide_special)}{pair}"
            f"{truncation_note(result)}")


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


@dataclasses.dataclass(frozen=True)
class Figure:
    """A finished figure to write: its file stem, the widget that draws it and the caption that describes it."""
    name: str
    widget: QWidget
    caption: str


def profile_caption(profile: ProfileResult) -> str:
    """One line for a profiler figure: what the sweep measured (kernels, lengths, backend, dtype, heads, d_k)."""
    config = profile.config
    lengths = sorted(config.lengths)
    span = f"n {lengths[0]}" if len(lengths) == 1 else f"n {lengths[0]}–{lengths[-1]} ({len(lengths)} lengths)"
    return (f"attnstudio · profiler · kernels: {', '.join(config.kernels)} · {span} · backend: "
            f"{', '.join(config.backends)} · {config.dtype} · {config.heads} heads · d_k {config.d_k} · "
            f"median of {config.repeats} runs")


def export_session(figures: list[Figure], heads: Iterable[Figure], result: ComputeResult, shown: Session,
                   out_dir: Path, progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write every figure (PNG + SVG), the selected layer's heads one by one, weights, session and report.

    ``figures`` are finished views with their own captions; ``heads`` yields the heatmap once per head of
    ``shown.layer`` (whoever drives the view does so while this iterates); ``shown`` is the settings the
    figures were drawn with, including the profile to save with the session.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FileWriteError(f"cannot create {out_dir}: {error.strerror or error}") from None
    layer, selected_head = shown.layer, shown.head
    total = 2 * len(figures) + result.heads + 4
    written: list[Path] = []

    def step(label: str, path: Path) -> None:
        written.append(path)
        if progress is not None:
            progress(len(written), total, label)

    for figure in figures:
        for suffix in (".png", ".svg"):
            step(f"{figure.name}{suffix}",
                 export_view(figure.widget, out_dir / f"{figure.name}{suffix}", caption=figure.caption))
    heads_dir = out_dir / f"layer{layer + 1}_heads"
    try:
        heads_dir.mkdir(exist_ok=True)
    except FileExistsError:
        raise FileWriteError(f"cannot create the folder {heads_dir}: a file of that name is in the way") from None
    except OSError as error:
        raise FileWriteError(f"cannot create the folder {heads_dir}: {error.strerror or error}") from None
    for figure in heads:
        step(figure.name, export_view(figure.widget, heads_dir / f"{figure.name}.png", caption=figure.caption))
    write_atomic(out_dir / "weights.npy", weights_npy(result))
    step("weights.npy", out_dir / "weights.npy")
    write_atomic(out_dir / f"weights_layer{layer + 1}_head{selected_head + 1}.csv",
                 weights_csv(result, layer, selected_head))
    step("weights.csv", out_dir / f"weights_layer{layer + 1}_head{selected_head + 1}.csv")
    session_path = out_dir / f"session{SESSION_SUFFIX}"
    shown.save(session_path)
    step("session", session_path)
    report = out_dir / "report.html"
    page = _report_html(shown, result, caption_for(shown, result), figures, heads_dir.name)
    write_atomic(report, page.encode("utf-8"))
    step("report", report)
    return written


def _report_html(session: Session, result: ComputeResult, caption: str, figures: list[Figure], heads_dir: str) -> str:
    settings = {
        "text": session.text, "second text (keys/values)": session.pair_text or "—", "model": result.model_name,
        "heads": result.heads, "d_k": result.d_k, "score": SCORES[session.score].caption,
        "temperature": session.temperature, "mask": mask_caption(result, session.mask),
        "backend": result.backend.description, "colour": describe_display(session.color_scale, session.hide_special),
        "tokens": " ".join(result.query_tokens), "compute time": f"{result.elapsed_s * 1000:.1f} ms",
    }
    if result.attention_kind is not None:  # encoder-decoder: the text is the source, and there is a target
        one_text = ("text", "second text (keys/values)")
        settings = {"source text": session.text, "target text (decoder inputs after the start token)":
                    session.target_text or "— (the start token alone)",
                    **{key: value for key, value in settings.items() if key not in one_text},
                    "score": T5_SCORES[result.position_bias is not None],
                    "target tokens": " ".join(result.target_tokens),
                    "tokens": " ".join(result.for_kind("encoder").query_tokens)}
    if result.notices:
        settings["notices"] = " ".join(result.notices)
    if session.is_synthetic:
        settings.update({"d_model": session.d_model, "seed": session.seed})
    rows = "".join(f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
                   for name, value in settings.items())
    shown = "".join(f'<figure><img src="{f.name}.png" alt="{f.name}"><figcaption>{f.name}: '
                    f'{html.escape(f.caption)} — <a href="{f.name}.svg">SVG</a></figcaption></figure>' for f in figures)
    heads = "".join(f'<img class="head" src="{heads_dir}/head{h + 1:02d}.png" alt="head {h + 1}">'
                    for h in range(result.heads))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>attnstudio report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
th{{text-align:left;padding-right:1em;vertical-align:top}} img{{max-width:100%;border:1px solid #ddd}}
img.head{{width:32%;margin:0.3%}} figure{{margin:1.5em 0}}</style></head>
<body><h1>attnstudio report</h1><p>{html.escape(caption)}</p>
<table>{rows}</table>{shown}<h2>Every head of the selected layer</h2>{heads}
<p>Raw data: <a href="weights.npy">weights.npy</a> (layers, heads, n_q, n_k), the selected head as CSV,
and the <a href="session{SESSION_SUFFIX}">session file</a> to reopen all of this in attnstudio.</p>
</body></html>
"""
