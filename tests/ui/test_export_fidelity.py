"""Export fidelity: every format of a view is the same picture, and the picture on the screen.

For every view an image export can draw (the heatmap, heads, model, pipeline, lines, multi-head lines, rollout
and flow views on MiniLM; Why this score and Compare on MiniLM with a text B; Next token and Logit lens on the tiny
Llama decoder in tests/data; Position bias and Next token on the tiny T5), the PNG at scales 1, 2 and 3, the SVG
rastered by librsvg (``rsvg-convert``, apt librsvg2-bin: GNOME's image viewer, Inkscape's import, many thumbnails)
and the PDF rastered by poppler (``pdftoppm``, apt poppler-utils: Evince, Okular) are compared with the PDF raster
and with an on-screen ``grab()`` of the view. The measure is ../shared/tools/export_agreement.py's: both images
scaled to 600x400 grey; a pixel differs when no pixel within one pixel of it in the other image is within 0.4
of full scale, so anti-aliasing and one-pixel shifts are forgiven but garbled labels, missing columns,
smoothed cells and black polygons are not. "The same picture" is at most 0.2% of pixels differing.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from attnstudio.core.masks import parse_mask_spec
from attnstudio.core.profiling import ProfileConfig, ProfilePoint, ProfileResult
from attnstudio.engine import Engine
from attnstudio.export.images import CAPTION_HEIGHT, export_view
from attnstudio.export.session_export import caption_for
from attnstudio.export.svg_portable import enlarge
from attnstudio.session import Session
from attnstudio.ui.offscreen import offscreen_views
from attnstudio.ui.theme import apply_theme
from attnstudio.view_names import EXPORT_VIEWS
from tests.core.test_cli import run_cli

TEXT = "The trophy would not fit in the suitcase because it was too big."
VIEWS = ("heatmap", "heads", "pipeline", "lines", "rollout", "flow", "model", "multi_lines")
DATA = Path(__file__).resolve().parents[1] / "data"
# The other views, each on a session that gives it something to draw: {case: (session, views)}.
MORE_CASES = {
    "minilm": (Session(text=TEXT, backend="numpy", cell=(3, 2), compare_text=TEXT.replace("suitcase", "box")),
               ("why", "compare")),
    "decoder": (Session(text=TEXT, backend="numpy", model=str(DATA / "tiny-llama")), ("next_token", "logit_lens")),
    "t5": (Session(text=TEXT, backend="numpy", model=str(DATA / "tiny-t5"), target_text="Die Trophäe"),
           ("position_bias", "next_token")),
}
MORE_VIEWS = tuple(f"{case}-{name}" for case, (_session, names) in MORE_CASES.items() for name in names)
RENDERERS = {"rsvg-convert": "librsvg2-bin", "pdftoppm": "poppler-utils"}
SAME_PICTURE = 0.002  # share of differing pixels; a correct rendering gives about 0.0001
FORMATS = ("png1", "png2", "png3", "svg", "pdf")


def grey(image: QImage) -> np.ndarray:
    """The image as (400, 600) grey levels in [0, 1], scaled as export_agreement.py does."""
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    image = image.scaled(600, 400, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width()].astype(float) / 255


def differing(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels of either image with no counterpart within one pixel and 0.4 of full scale in the other."""
    def one_way(x, y):
        pad, best = np.pad(x, 1, mode="edge"), np.full(y.shape, np.inf)
        for dy in range(3):
            for dx in range(3):
                best = np.minimum(best, np.abs(pad[dy:dy + y.shape[0], dx:dx + y.shape[1]] - y))
        return float((best > 0.4).mean())
    return max(one_way(a, b), one_way(b, a))


def renderer(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing, so exports cannot be checked in that renderer: "
                    f"apt-get install {RENDERERS[name]} (packaging/system-deps.sh installs it)", pytrace=False)
    return path


def rasterize(path: Path, pdf_dpi: int = 100) -> Path:
    """An SVG through librsvg, a PDF through poppler, at the resolutions export_agreement.py uses."""
    if path.suffix == ".svg":
        out = path.with_name(f"{path.stem}-svg.png")
        subprocess.run([renderer("rsvg-convert"), "-w", "1200", str(path), "-o", str(out)], check=True, timeout=60)
        return out
    subprocess.run([renderer("pdftoppm"), "-png", "-r", str(pdf_dpi), "-singlefile", str(path),
                    str(path.with_name(f"{path.stem}-pdf"))], check=True, timeout=60)
    return path.with_name(f"{path.stem}-pdf.png")


def body(image: QImage, body_height: float, caption: bool = True) -> QImage:
    """The part of an export above its caption band, which the screen does not show."""
    if not caption:
        return image
    rows = round(image.height() * body_height / (body_height + CAPTION_HEIGHT))
    return image.copy(0, 0, image.width(), rows)


def export_all(view, folder: Path, name: str, caption: str, pdf_dpi: int = 100) -> dict:
    """Every format of one view, rastered: {format: QImage}, the on-screen grab, and the body's height."""
    target = view.export_target()
    files = {f"png{scale}": export_view(target, folder / f"{name}-{scale}.png", scale=scale, caption=caption)
             for scale in (1, 2, 3)}
    for suffix in ("svg", "pdf"):
        files[suffix] = rasterize(export_view(target, folder / f"{name}.{suffix}", caption=caption), pdf_dpi)
    screen = target.grab().toImage()
    screen.save(str(folder / f"{name}-screen.png"))
    return {"images": {key: QImage(str(path)) for key, path in files.items()}, "screen": screen,
            "body_height": target.viewport().height() if hasattr(target, "viewport") else target.height()}


@pytest.fixture(scope="module")
def exported(qapp, tmp_path_factory):
    for name in RENDERERS:
        renderer(name)
    folder = tmp_path_factory.mktemp("fidelity")
    views, session_model, results = offscreen_views(Session(text=TEXT, backend="numpy"))
    views["profiler"].shutdown()
    caption = caption_for(results.shown, results.result)
    try:
        renderings = {name: export_all(views[name], folder, name, caption) for name in VIEWS}
        apply_theme("dark", root=views["heatmap"])  # the export is drawn on the view's own background
        try:
            # A PDF page is a whole number of points; at 100 dpi its last pixel row is part paper, which on a
            # dark figure reads as a white line that no viewer shows. At 144 dpi the page is whole pixels.
            renderings["heatmap-dark"] = export_all(views["heatmap"], folder, "heatmap-dark", caption, pdf_dpi=144)
        finally:
            apply_theme("light", root=views["heatmap"])
        yield renderings
    finally:
        for view in views.values():
            view.close()
            view.deleteLater()
        qapp.processEvents()


@pytest.fixture(scope="module")
def more_exported(qapp, tmp_path_factory):
    """Every format of the views of MORE_CASES, each case from its own set of views.

    Their PDFs are rastered at 144 dpi, where a point is two whole pixels (as for the dark heatmap): at 100 dpi a
    point is 1.39 pixels, so each hairline axis of Why's four plots lands on a different pixel row than on screen
    (0.24% of pixels; the same PDF at 144 dpi differs from the screen in 0.002%).
    """
    for name in RENDERERS:
        renderer(name)
    folder = tmp_path_factory.mktemp("fidelity-more")
    renderings = {}
    for case, (session, names) in MORE_CASES.items():
        views, _session_model, results = offscreen_views(session)
        views["profiler"].shutdown()
        try:
            caption = caption_for(results.shown, results.result)
            for name in names:
                renderings[f"{case}-{name}"] = export_all(views[name], folder, f"{case}-{name}", caption, pdf_dpi=144)
        finally:
            for view in views.values():
                view.close()
                view.deleteLater()
            qapp.processEvents()
    yield renderings


def test_every_export_view_is_checked():
    """A view added to the registry gets a fidelity check here, or this fails."""
    checked = set(VIEWS) | {name.split("-", 1)[1] for name in MORE_VIEWS}
    assert checked == set(EXPORT_VIEWS), f"unchecked: {sorted(set(EXPORT_VIEWS) - checked)}"


@pytest.mark.parametrize("name", MORE_VIEWS)
def test_the_other_views_export_the_picture_on_the_screen(more_exported, name):
    rendering = more_exported[name]
    images = rendering["images"]
    reference, screen = grey(images["pdf"]), grey(rendering["screen"])
    assert screen.std() > 0.05, f"{name}: the view draws nothing to compare"
    shares = {key: differing(reference, grey(images[key])) for key in FORMATS if key != "pdf"}
    shares.update({f"{key}/screen": differing(screen, grey(body(image, rendering["body_height"])))
                   for key, image in images.items()})
    report = ", ".join(f"{key} {share:.3%}" for key, share in shares.items())
    print(f"{name}: differ from the PDF raster (x/screen: from the on-screen grab): {report}")
    assert max(shares.values()) <= SAME_PICTURE, f"{name}: {report}"


@pytest.mark.parametrize("name", [*VIEWS, "heatmap-dark"])
def test_every_format_is_the_same_picture(exported, name):
    images = exported[name]["images"]
    reference = grey(images["pdf"])
    shares = {key: differing(reference, grey(images[key])) for key in FORMATS if key != "pdf"}
    report = ", ".join(f"{key} {share:.3%}" for key, share in shares.items())
    print(f"{name}: differ from the PDF raster: {report}")
    assert max(shares.values()) <= SAME_PICTURE, f"{name}: differ from the PDF raster: {report}"


@pytest.mark.parametrize("name", [*VIEWS, "heatmap-dark"])
def test_every_format_is_the_picture_on_the_screen(exported, name):
    rendering = exported[name]
    screen = grey(rendering["screen"])
    shares = {key: differing(screen, grey(body(image, rendering["body_height"])))
              for key, image in rendering["images"].items()}
    report = ", ".join(f"{key} {share:.3%}" for key, share in shares.items())
    print(f"{name}: differ from the on-screen grab: {report}")
    assert max(shares.values()) <= SAME_PICTURE, f"{name}: differ from the on-screen grab: {report}"


# High-contrast heatmaps: a sharp (previous-token) head whose cells are all but 0 or 1, where a cell out of place
# by a fraction of its width shows, and masked cells (holes over the grey backdrop); each colour scale; both themes.
# Layer 1 head 3 of MiniLM on TEXT attends to the previous token with weight ~1.
SHARP = {"layer": 0, "head": 2}
CONTRAST_CASES = {
    "sharp-unit-light": ("light", dict(SHARP, color_scale="unit"), "none"),
    "sharp-auto-dark": ("dark", dict(SHARP, color_scale="auto"), "none"),
    "masked-row-light": ("light", dict(SHARP, color_scale="row"), "causal+window:3"),
    "masked-auto-dark": ("dark", dict(SHARP, color_scale="auto"), "causal+window:3"),
}


@pytest.fixture(scope="module")
def contrast_exported(qapp, tmp_path_factory):
    """Every format of the heatmap for each CONTRAST_CASES entry, from one set of views (recomputed per mask)."""
    for name in RENDERERS:
        renderer(name)
    folder = tmp_path_factory.mktemp("contrast")
    views, session_model, results = offscreen_views(Session(text=TEXT, backend="numpy", **SHARP))
    views["profiler"].shutdown()
    heatmap = views["heatmap"]
    renderings = {}
    try:
        for name, (theme, settings, mask) in CONTRAST_CASES.items():
            if session_model.session.mask != parse_mask_spec(mask):
                assert session_model.update(mask=parse_mask_spec(mask))
                results.set_result(Engine().compute(session_model.session))
            assert session_model.update(**settings)
            qapp.processEvents()
            apply_theme(theme, root=heatmap)
            shown = results.shown
            assert (shown.layer, shown.head, shown.color_scale) == (0, 2, settings["color_scale"])
            renderings[name] = export_all(heatmap, folder, name, caption_for(shown, results.result), pdf_dpi=144)
            renderings[name]["result"] = results.result
        yield renderings
    finally:
        apply_theme("light", root=heatmap)
        for view in views.values():
            view.close()
            view.deleteLater()
        qapp.processEvents()


def test_the_sharp_head_is_high_contrast(contrast_exported):
    """The cases test what they claim: the head's weights are near 0 or 1, and the mask forbids cells."""
    weights = contrast_exported["sharp-unit-light"]["result"].attentions()[SHARP["layer"], SHARP["head"]]
    assert np.mean((weights < 0.05) | (weights > 0.9)) > 0.95
    masked = contrast_exported["masked-row-light"]["result"]
    assert masked.attentions()[0, 2][0, 1:].max() == 0  # causal: the first query sees only itself


@pytest.mark.parametrize("name", list(CONTRAST_CASES))
def test_high_contrast_heatmaps_are_the_same_picture(contrast_exported, name):
    images = contrast_exported[name]["images"]
    reference = grey(images["pdf"])
    shares = {key: differing(reference, grey(images[key])) for key in FORMATS if key != "pdf"}
    screen = grey(contrast_exported[name]["screen"])
    body_height = contrast_exported[name]["body_height"]
    shares["screen"] = differing(screen, grey(body(images["png2"], body_height)))
    report = ", ".join(f"{key} {share:.3%}" for key, share in shares.items())
    print(f"{name}: differ from the PDF raster (screen: from PNG@2): {report}")
    assert max(shares.values()) <= SAME_PICTURE, f"{name}: {report}"


def test_an_embedded_image_is_enlarged_by_exact_repetition(qapp):
    """The SVG's heatmap image, enlarged so that no renderer smooths it, keeps every cell at its place."""
    cells = np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) | np.uint32(0xFF000000)  # (16, 16) ARGB
    picture = QImage(cells.data, 16, 16, 64, QImage.Format.Format_ARGB32).copy()
    big = enlarge(picture, 192, 86)
    assert (big.width(), big.height()) == (16 * 192, 16 * 86)
    for row, col in ((0, 0), (15, 14), (15, 15), (7, 9)):
        for y, x in ((row * 86, col * 192), ((row + 1) * 86 - 1, (col + 1) * 192 - 1)):
            assert big.pixel(x, y) == int(cells[row, col]), (row, col, x, y)


def test_the_dark_theme_exports_on_its_dark_background(exported):
    light, dark = exported["heatmap"]["images"]["png1"], exported["heatmap-dark"]["images"]["png1"]
    corner = (2, 2)  # outside every plot: the canvas background
    assert QImage(light).pixelColor(*corner).lightness() > 200
    assert QImage(dark).pixelColor(*corner).lightness() < 60


def test_a_png_prints_at_its_on_screen_size(exported):
    images = exported["heatmap"]["images"]
    assert images["png2"].width() == 2 * images["png1"].width()
    assert images["png2"].dotsPerMeterX() == 2 * images["png1"].dotsPerMeterX()


def test_the_export_command_default_png_is_the_same_picture(exported, tmp_path):
    """End to end: `attnstudio export TEXT -o fig.png` at its default scale, in a fresh process."""
    done = run_cli("export", TEXT, "-o", str(tmp_path / "fig.png"))
    assert done.returncode == 0, done.stderr
    share = differing(grey(exported["heatmap"]["images"]["pdf"]), grey(QImage(str(tmp_path / "fig.png"))))
    assert share <= SAME_PICTURE, f"the command's PNG differs from the PDF raster in {share:.3%} of pixels"


def synthetic_profile(peak_scale: float = 1.0) -> dict:
    """A finished sweep to 4096 tokens (made-up timings: this checks drawing, not measuring)."""
    lengths = (64, 128, 256, 512, 1024, 2048, 4096)
    points = [ProfilePoint(n, kernel, "numpy", "ok", seconds * n * n, int(peak_scale * 32 * n * n), 32 * n * n)
              for kernel, seconds in (("naive", 2e-9), ("tiled", 3e-9)) for n in lengths]
    return ProfileResult(ProfileConfig(lengths=lengths, kernels=("naive", "tiled")), points).to_json_dict()


def test_the_profiler_figure_follows_its_data_in_plain_units(qapp, tmp_path):
    """The session report's profiler.png: drawn before the view was ever painted, it must span the data."""
    views, session_model, _results = offscreen_views(Session(text="Profiles.", backend="numpy",
                                                            profile=synthetic_profile()))
    profiler = views["profiler"]
    try:
        profiler.shutdown()
        target = profiler.export_target()
        png = QImage(str(export_view(target, tmp_path / "profiler.png", scale=2)))  # before any grab paints it
        for plot in (profiler.time_plot, profiler.memory_plot):
            low, high = plot.getViewBox().viewRange()[0]
            assert low <= np.log10(64) and high >= np.log10(4096), f"x range 10^{low:.2f}..10^{high:.2f}"
        share = differing(grey(target.grab().toImage()), grey(png))
        assert share <= SAME_PICTURE, f"the profiler PNG differs from the screen in {share:.3%} of pixels"
        labels = [plot.getAxis("left").labelText for plot in (profiler.time_plot, profiler.memory_plot)]
        assert labels == ["median time (ms)", "peak memory (MiB)"]
        assert not any(plot.getAxis("left").labelUnitPrefix for plot in (profiler.time_plot, profiler.memory_plot))
        session_model.update(profile=synthetic_profile(peak_scale=64.0))  # naive at 4096: 32 GiB
        assert profiler.memory_plot.getAxis("left").labelText == "peak memory (GiB)"
        curve = next(item for item in profiler.memory_plot.listDataItems() if item.name().startswith("naive"))
        assert curve.yData.max() == pytest.approx(64 * 32 * 4096**2 / 2**30)
    finally:
        for view in views.values():
            view.close()
            view.deleteLater()
        qapp.processEvents()
