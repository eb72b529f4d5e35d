"""The ``attnstudio`` command: the app by default, sub-commands for scripts.

Every user error prints one line on stderr and exits 2; no traceback reaches
the user. Qt is imported only by the sub-commands that draw.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from attnstudio import __version__
from attnstudio.attention_kinds import ATTENTION_KINDS, DEFAULT_ATTENTION_KIND
from attnstudio.core.ablation import ABLATION_MODES, Ablation
from attnstudio.core.backend import BACKEND_NAMES, configure_host_allocator, to_numpy
from attnstudio.core.display import COLOR_SCALES
from attnstudio.core.masks import parse_mask_spec
from attnstudio.core.profile_protocol import PROGRESS_FLAG, progress_line, result_line
from attnstudio.core.profiling import DTYPES
from attnstudio.core.scores import SCORE_FUNCTIONS
from attnstudio.errors import AttnStudioError
from attnstudio.fileio import check_writable
from attnstudio.limits import LIMITS
from attnstudio.session import SYNTHETIC, Session
from attnstudio.view_names import EXPORT_VIEWS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not the whole usage text."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(AttnStudioError):
    pass


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that describe what to compute (shared by compute and export)."""
    parser.add_argument("--pair", default="", metavar="TEXT_B",
                        help="cross-attention: queries from TEXT, keys and values from TEXT_B")
    parser.add_argument("--target", default=None, metavar="TARGET",
                        help="encoder-decoder models (T5): TEXT is the source and TARGET what the decoder has produced "
                             "so far (fed after its start token; \"\" = the start token alone)")
    parser.add_argument("--model", default="minilm", help="minilm or smollm2 (built in), synthetic, a model folder "
                                                         "or a .gguf file")
    parser.add_argument("--heads", type=int, help="head count (synthetic; re-splits a pretrained model's heads)")
    parser.add_argument("--d-k", type=int, default=16, help="per-head width (synthetic)")
    parser.add_argument("--d-model", type=int, default=64, help="model width (synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (synthetic, additive scores)")
    parser.add_argument("--mask", default="none", help="none, causal, window:W, padding[:N], custom:FILE.npy "
                                                       "(join with +)")
    parser.add_argument("--score", default="scaled_dot", choices=SCORE_FUNCTIONS)
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the scores (default 1)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES)
    parser.add_argument("--ablate", type=_head_list, default=(), metavar="L.H,...",
                        help="switch heads off, e.g. 1.3,2.5 (layer.head, from 1)")
    parser.add_argument("--ablation-mode", default="zero", choices=ABLATION_MODES,
                        help="zero: the head outputs nothing; uniform: it attends evenly to the keys it may see")


def _head_list(text: str) -> tuple[tuple[int, int], ...]:
    """'1.3,2.5' -> ((0, 2), (1, 4)): layer.head pairs counted from 1, stored from 0."""
    pairs = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        layer, dot, head = part.partition(".")
        if not dot or not layer.isdigit() or not head.isdigit() or int(layer) < 1 or int(head) < 1:
            raise argparse.ArgumentTypeError(f"expected layer.head pairs counted from 1 (e.g. 1.3,2.5), got {part!r}")
        pairs.append((int(layer) - 1, int(head) - 1))
    return tuple(pairs)


def session_from_args(args: argparse.Namespace, text: str) -> Session:
    model = args.model
    if model not in ("minilm", SYNTHETIC):
        model = str(Path(model).expanduser())
    return Session(text=text, pair_text=args.pair, target_text=args.target or "", model=model, heads=args.heads,
                   d_k=args.d_k, d_model=args.d_model, seed=args.seed, score=args.score, temperature=args.temperature,
                   mask=parse_mask_spec(args.mask), backend=args.backend,
                   ablation=Ablation(args.ablate, args.ablation_mode)).validate()


def _command_compute(args: argparse.Namespace) -> int:
    from attnstudio.engine import Engine
    from attnstudio.fileio import write_atomic

    session = session_from_args(args, args.text)
    result = Engine().compute(session)
    check_target(args, result)
    check_custom_masks(args.mask, result)
    if result.kinds is not None:
        arrays = _seq2seq_arrays(result, args.layers)
    else:
        arrays = {"tokens": np.array(result.query_tokens, dtype=str), "attentions": _chosen_layers(result, args.layers)}
    if result.forward.next_logits is not None:  # decoders: the prediction after the last token
        arrays["next_logits"] = np.asarray(to_numpy(result.forward.next_logits), dtype=np.float32)
    if result.kinds is None and (session.is_cross_attention or len(result.key_tokens) != len(result.query_tokens)):
        arrays["key_tokens"] = np.array(result.key_tokens, dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(Path(args.output), buffer.getvalue())
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    layers, heads, n_q, n_k = arrays["attentions"].shape
    if result.kinds is not None:
        n_tgt, name = len(arrays["target_tokens"]), result.plain_model_name
        print(f"wrote {args.output}: {n_q} source and {n_tgt} target tokens, {layers} encoder and "
              f"{len(arrays['decoder_attentions'])} decoder layer(s) x {heads} head(s) "
              f"({name}, {result.backend.name}, {result.elapsed_s * 1000:.1f} ms)")
        return 0
    print(f"wrote {args.output}: {n_q}x{n_k} tokens, {layers} layer(s) x {heads} head(s) "
          f"({result.model_name}, {result.backend.name}, {result.elapsed_s * 1000:.1f} ms)")
    return 0


LONG_WRITE_BYTES = 4 * 2**30  # a long document's weights are made for the file: at most this much of them


def check_target(args: argparse.Namespace, result) -> None:
    """--target is for encoder-decoder models only: one line, not a silently ignored option."""
    if args.target is not None and result.kinds is None:
        raise UsageError(f"--target needs an encoder-decoder model (T5); {result.model_name} takes one text")


def _seq2seq_arrays(result, layers: tuple[int, ...] | None) -> dict[str, np.ndarray]:
    """tokens (source), target_tokens (start token first) and each attention kind under its own name:
    attentions (encoder, L, H, n_src, n_src), decoder_attentions (L, H, n_tgt, n_tgt), cross_attentions
    (L, H, n_tgt, n_src); --layers picks from each stack."""
    arrays = {"tokens": np.array(result.for_kind("encoder").query_tokens, dtype=str),
              "target_tokens": np.array(result.target_tokens, dtype=str)}
    for key, kind in ATTENTION_KINDS.items():
        arrays[kind.npz_key] = _chosen_layers(result.for_kind(key), layers)
    return arrays


def _chosen_layers(result, layers: tuple[int, ...] | None) -> np.ndarray:
    """(chosen layers, heads, n_q, n_k) float32; only the chosen layers are copied to the host."""
    if layers is None and result.long is None:
        return result.attentions()
    layers = tuple(range(1, result.num_layers + 1)) if layers is None else layers
    bad = [layer for layer in layers if not 1 <= layer <= result.num_layers]
    if bad:
        raise UsageError(f"--layers must be from 1 to {result.num_layers}, got {bad[0]}")
    if result.long is None:
        return np.stack([np.asarray(result.step(layer - 1, "weights"), dtype=np.float32) for layer in layers])
    long, n = result.long, len(result.query_tokens)  # a long document keeps queries and keys: weights on demand
    size = len(layers) * result.heads * n * n * 4
    if size > LONG_WRITE_BYTES:
        raise UsageError(f"the weights of {len(layers)} layer(s) at {n} tokens take {size / 2**30:.1f} GiB "
                         f"(at most {LONG_WRITE_BYTES / 2**30:.0f}); choose fewer with --layers")
    return np.stack([np.stack([long.weights(layer - 1, head, (0, n), (0, n)) for head in range(result.heads)])
                     for layer in layers])


def _command_export(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["attnstudio"])
    try:
        return _export(args)
    finally:
        # Tear the widgets down while Qt is still alive; left to interpreter exit they can crash it.
        for widget in QApplication.topLevelWidgets():
            widget.close()
            widget.deleteLater()
        app.processEvents()
        app.sendPostedEvents(None, 0)


def _export(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from attnstudio.export.images import IMAGE_SUFFIXES, export_view
    from attnstudio.export.session_export import caption_for
    from attnstudio.ui.offscreen import export_views, offscreen_views

    if args.session:
        if not args.out_dir:
            raise UsageError("--session needs --out-dir DIR")
        session = Session.load(args.session)
        views, session_model, results = offscreen_views(session)
        try:
            written = export_views(views, session_model, results, Path(args.out_dir))
        finally:
            views["profiler"].shutdown()
            views["flow"].shutdown()
        print(f"wrote {len(written)} files to {args.out_dir} (report.html)")
        return 0
    if args.text is None or not args.output:
        raise UsageError("give TEXT and -o OUT.png|svg|pdf, or --session FILE --out-dir DIR")
    if Path(args.output).suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"output must end in {', '.join(IMAGE_SUFFIXES)}")
    LIMITS["export_scale"].check(args.scale)
    check_writable(Path(args.output))
    session = session_from_args(args, args.text)
    if len(args.cell) != 2:
        raise UsageError("--cell takes two token positions: QUERY,KEY")
    session = dataclasses.replace(session, view=args.view, cell=tuple(args.cell), color_scale=args.color_scale,
                                  attention_kind=args.attention,
                                  hide_special=args.hide_special, compare_text=args.compare,
                                  compare_word=args.word,
                                  lines_heads=tuple(sorted({head - 1 for head in args.lines_heads}))).validate()
    views, session_model, results = offscreen_views(session)
    views["profiler"].shutdown()
    views["flow"].shutdown()
    result = results.result
    if result is None:
        raise UsageError(f"nothing to export: {getattr(results, 'last_error', '') or 'the compute failed'}")
    check_target(args, result)
    check_custom_masks(args.mask, result)
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    if not 1 <= args.layer <= result.num_layers:
        raise UsageError(f"--layer must be from 1 to {result.num_layers}")
    if not 1 <= args.head <= result.heads:
        raise UsageError(f"--head must be from 1 to {result.heads}")
    if any(not 1 <= head <= result.heads for head in args.lines_heads):
        raise UsageError(f"--lines-heads must name heads from 1 to {result.heads}")
    session_model.update(layer=args.layer - 1, head=args.head - 1)
    QApplication.processEvents()
    export_view(views[args.view].export_target(), Path(args.output), scale=args.scale,
                caption=caption_for(results.shown, result, args.view))
    print(f"wrote {args.output} ({args.view}, layer {args.layer}, head {args.head})")
    return 0


def check_custom_masks(mask_text: str, result) -> None:
    """A custom:FILE.npy mask must be exactly (n_q, n_k) for the tokens the text became."""
    from attnstudio.core.masks import load_custom_mask

    n_q, n_k = len(result.query_tokens), len(result.key_tokens)
    for part in mask_text.split("+"):
        name, _, argument = part.strip().partition(":")
        if name.strip().lower() == "custom" and argument:
            shape = load_custom_mask(Path(argument)).shape
            if shape != (n_q, n_k):
                raise UsageError(f"custom mask {Path(argument).name} is {shape[0]}x{shape[1]} but the text has "
                                 f"{n_q} query and {n_k} key tokens: the mask must be {n_q}x{n_k} "
                                 f"(see the tokens with `attnstudio compute`)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _format_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def _command_profile(args: argparse.Namespace) -> int:
    from attnstudio.core.profiling import ProfileConfig, run_profile
    from attnstudio.fileio import write_atomic

    heads, d_k = args.heads, args.d_k
    if args.model:
        from attnstudio.models.registry import load_model_cached  # noqa: PLC0415 - loads numpy models

        parameters = load_model_cached(args.model).parameters
        heads = parameters.num_heads
        d_k = getattr(parameters, "head_dim", None) or parameters.d_model // heads
        print(f"attention shapes of {args.model}: {heads} heads of width {d_k}", file=sys.stderr)
    config = ProfileConfig(lengths=args.n, kernels=args.kernels, backends=args.backend, heads=heads,
                           d_k=d_k, dtype=args.dtype, repeats=args.repeats, window=args.window).validate()
    for output in (args.json, args.csv):  # before the sweep, not after minutes of measuring
        if output:
            check_writable(Path(output))
    interactive = sys.stderr.isatty()
    if args.progress_json:  # the app's profiler panel runs sweeps in a child process and reads these lines
        result = run_profile(config, progress=lambda done, total, point: print(progress_line(done, total, point),
                                                                               flush=True))
        print(result_line(result), flush=True)
        return 0

    def progress(done: int, total: int, point) -> None:
        filled = int(30 * done / total)
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}  {point.kernel}/{point.backend} "
                f"n={point.n}: {point.status if point.status != 'ok' else f'{point.median_s * 1000:.2f} ms'}")
        print(("\r" + line.ljust(100)) if interactive else line, end="" if interactive else "\n",
              file=sys.stderr, flush=True)

    result = run_profile(config, progress=progress)
    if interactive:
        print(file=sys.stderr)
    print(f"{'n':>7} {'kernel':>7} {'backend':>7} {'median time':>12} {'peak memory':>12} {'theory':>11}  status")
    for p in result.points:
        time_text = "-" if p.median_s is None else f"{p.median_s * 1000:.3f} ms"
        print(f"{p.n:>7} {p.kernel:>7} {p.backend:>7} {time_text:>12} {_format_bytes(p.peak_bytes):>12} "
              f"{_format_bytes(p.theoretical_bytes):>11}  {p.status}")
    print(f"fitted exponents (n >= {result.fit_min_n()}): " + "; ".join(
        f"{name}: time {_fmt_exp(e['time'])}, memory {_fmt_exp(e['memory'])}"
        for name, e in result.exponents().items()))
    if args.json:
        write_atomic(Path(args.json), json.dumps(result.to_json_dict(), indent=2).encode())
    if args.csv:
        write_atomic(Path(args.csv), result.to_csv().encode())
    return 0


def _fmt_exp(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnstudio", description="A desktop playground for transformer attention.")
    parser.add_argument("--version", action="version", version=f"attnstudio {__version__}")
    parser.add_argument("--selftest", metavar="OUT.png",
                        help="open the window with the default sentence on this display (offscreen where there is "
                             "none), check its text has glyphs, save a screenshot, exit 0 only if all of that worked")
    parser.add_argument("--model", dest="launch_model", metavar="MODEL",
                        help="open the window on this model: minilm, smollm2, a .gguf file, a model folder, a cached "
                             "Hugging Face repo id or an Ollama name (default: the last session's)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    compute = commands.add_parser("compute", help="compute attention weights and write them to .npz")
    compute.add_argument("text", help="the sentence (queries)")
    add_model_options(compute)
    compute.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                         help="writes tokens (str), attentions float32 (layers, heads, n_q, n_k) and, for "
                              "decoders, next_logits float32 (vocab,); T5 with --target: tokens (source), "
                              "target_tokens, attentions (encoder), decoder_attentions, cross_attentions, next_logits")
    compute.add_argument("--layers", type=_int_list, metavar="L1,L2,...",
                         help="write only these layers' attentions (from 1), e.g. 1,15,30")
    compute.set_defaults(handler=_command_compute)

    export = commands.add_parser("export", help="render a view to PNG/SVG/PDF without a window, or a whole session")
    export.add_argument("text", nargs="?", help="the sentence (queries)")
    add_model_options(export)
    export.add_argument("-o", "--output", metavar="OUT.png|svg|pdf")
    export.add_argument("--view", default="heatmap", choices=EXPORT_VIEWS)
    export.add_argument("--attention", default=DEFAULT_ATTENTION_KIND, choices=tuple(ATTENTION_KINDS),
                        help="encoder-decoder models: which attention the view shows (encoder self, decoder self, "
                             "or cross: target rows x source columns)")
    export.add_argument("--layer", type=int, default=1, help="layer to show, from 1")
    export.add_argument("--head", type=int, default=1, help="head to show, from 1")
    export.add_argument("--cell", type=_int_list, default=(0, 0), metavar="Q,K",
                        help="the query,key token positions (from 0) the why view explains")
    export.add_argument("--compare", default="", metavar="TEXT_B", help="the compare view's second text")
    export.add_argument("--word", default="", help="the word the compare view follows in both texts")
    export.add_argument("--lines-heads", type=_int_list, default=(), metavar="H1,H2,...",
                        help="the heads (from 1) the multi_lines view draws together (default: every head)")
    export.add_argument("--color-scale", default="unit", choices=tuple(COLOR_SCALES),
                        help="weights to colours: unit (0-1, the default), auto (0 to the largest weight), "
                             "row (each row's largest weight at the top), log")
    export.add_argument("--hide-special", action="store_true",
                        help="hide [CLS], [SEP], BOS… rows and columns and renormalise the rows")
    export.add_argument("--scale", type=float, default=2.0,
                        help=f"PNG size as a multiple of 1200x800 (default 2; {LIMITS['export_scale'].low:g} to "
                             f"{LIMITS['export_scale'].high:g})")
    export.add_argument("--session", metavar="FILE", help="export every view of a saved session")
    export.add_argument("--out-dir", metavar="DIR", help="folder for --session exports")
    export.set_defaults(handler=_command_export)

    profile = commands.add_parser("profile", help="measure time and peak memory of attention kernels against n")
    profile.add_argument("--n", type=_int_list, default=(64, 128, 256, 512, 1024, 2048, 4096),
                         help="sequence lengths, comma-separated (default 64,...,4096)")
    profile.add_argument("--kernels", type=_name_list, default=("naive", "tiled", "window"),
                         help="naive, tiled, window (comma-separated)")
    profile.add_argument("--backend", type=_name_list, default=("numpy",), help="numpy, cupy (comma-separated)")
    profile.add_argument("--heads", type=int, default=8)
    profile.add_argument("--model", metavar="MODEL",
                         help="take --heads and --d-k from this model (minilm, smollm2, a .gguf file, a folder): its "
                              "query heads and head width")
    profile.add_argument("--d-k", type=int, default=64)
    profile.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    profile.add_argument("--repeats", type=int, default=3, help="timed calls per point (after one warm-up)")
    profile.add_argument("--window", type=int, default=64, help="sliding-window kernel: neighbours each side")
    profile.add_argument("--json", metavar="OUT.json")
    profile.add_argument("--csv", metavar="OUT.csv")
    profile.add_argument(PROGRESS_FLAG, action="store_true",
                         help="print one JSON line per point and the result as the last line (used by the app)")
    profile.set_defaults(handler=_command_profile)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"attnstudio: note: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # "ignoring unknown field(s) ...": a note, not a source listing
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_host_allocator()
    try:
        if args.command is None:
            from attnstudio.ui.app import run_app

            return run_app(selftest=args.selftest, model=args.launch_model)
        return args.handler(args)
    except AttnStudioError as error:
        print(f"attnstudio: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("attnstudio: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("attnstudio: error: out of memory; try a shorter text or fewer heads", file=sys.stderr)
        return 1
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - a bug (or a native panic): still one line, not a traceback
        text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        print(f"attnstudio: internal error: {type(error).__name__}: {text} (please report this)", file=sys.stderr)
        return 1
