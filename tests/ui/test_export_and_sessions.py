"""Exports (PNG/SVG/PDF, session folders, weights, clipboard) and session files through the app."""
from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QMessageBox

from attnstudio.core.masks import MaskSpec
from attnstudio.session import Session
from tests.core.test_cli import run_cli
from tests.ui.conftest import wait_for_result


def check_pdf(path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in data and b"startxref" in data


def check_svg(path, *words) -> str:
    text = path.read_text(encoding="utf-8")
    root = ElementTree.fromstring(text)
    assert root.tag.endswith("svg")
    for word in words:
        assert word in text, f"{word!r} is drawn as SVG text"
    return text


def image_array(path) -> np.ndarray:
    image = QImage(str(path)).convertToFormat(QImage.Format_RGB32)
    array = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return array[:, : image.width(), :3].copy()  # copy while the QImage that owns the bytes is alive


def test_export_the_heatmap_as_png_svg_and_pdf(make_window, tmp_path):
    window = make_window()
    canvas = window.views["heatmap"].canvas
    assert window.files.export_image_to(tmp_path / "h.png", scale=2.0)
    image = QImage(str(tmp_path / "h.png"))
    assert image.width() == 2 * canvas.viewport().width()
    assert image.height() >= 2 * canvas.viewport().height()
    pixels = image_array(tmp_path / "h.png")
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    left_axis = pixels[: pixels.shape[0] // 2, : pixels.shape[1] // 12]
    assert 0.005 < (left_axis.mean(-1) < 100).mean() < 0.5, "token labels are drawn beside the heatmap"
    assert window.files.export_image_to(tmp_path / "h.svg")
    check_svg(tmp_path / "h.svg", "because", "tired", "model minilm")
    assert window.files.export_image_to(tmp_path / "h.pdf")
    check_pdf(tmp_path / "h.pdf")


def test_every_view_exports(make_window, tmp_path):
    window = make_window(Session(backend="numpy"))
    for name in ("heads", "pipeline", "lines", "rollout"):
        window.session_model.update(view=name)
        assert window.files.export_image_to(tmp_path / f"{name}.png")
        assert image_array(tmp_path / f"{name}.png").std() > 10


def test_export_to_an_unwritable_place_reports_and_keeps_running(make_window, tmp_path):
    window = make_window()
    assert not window.files.export_image_to(tmp_path / "missing" / "dir" / "x.png")
    assert "not exported" in window.statusBar().currentMessage()
    assert not window.files.export_image_to(tmp_path / "x.bmp")
    assert "unknown image type" in window.statusBar().currentMessage()


def test_export_session_images_writes_a_complete_folder(make_window, tmp_path):
    window = make_window(Session(backend="numpy", layer=1, head=3))
    out = tmp_path / "export"
    assert window.files.export_session_to(out)
    for name in ("heatmap", "heads", "pipeline", "lines", "rollout"):
        assert (out / f"{name}.png").stat().st_size > 5000
        check_svg(out / f"{name}.svg")
    assert not (out / "profiler.png").exists(), "no profiler figure before a sweep"
    heads = sorted((out / "layer2_heads").glob("head*.png"))
    assert len(heads) == 12
    assert window.session_model.session.head == 3, "the selected head is restored after exporting every head"
    weights = np.load(out / "weights.npy", allow_pickle=False)
    assert weights.shape == (6, 12, 13, 13)
    np.testing.assert_array_equal(weights, window.results.result.attentions())
    assert (out / "weights_layer2_head4.csv").read_text().startswith("query \\ key,0:[CLS]")
    assert Session.load(out / "session.attnsession").layer == 1
    report = (out / "report.html").read_text()
    for referenced in ("heatmap.png", "layer2_heads/head12.png", "weights.npy", "session.attnsession"):
        assert referenced in report and (out / referenced).exists()


def test_weights_csv_npy_and_clipboard(make_window, tmp_path):
    window = make_window(Session(backend="numpy", layer=2, head=5))
    assert window.files.export_weights_to(tmp_path / "w.npy")
    assert np.load(tmp_path / "w.npy").shape == (6, 12, 13, 13)
    assert window.files.export_weights_to(tmp_path / "w.csv")
    rows = (tmp_path / "w.csv").read_text().splitlines()
    assert len(rows) == 14 and rows[9].startswith("8:it,")
    values = np.array([float(x) for x in rows[9].split(",")[1:]])
    np.testing.assert_allclose(values, window.results.result.attentions()[2, 5, 8], rtol=1e-6)
    window.files.copy_view()
    assert not QGuiApplication.clipboard().image().isNull()


def test_a_session_round_trips_to_the_same_weights(make_window, qtbot, tmp_path):
    session = Session(text="The bank raised rates.", model="synthetic", heads=3, d_k=8, d_model=32, seed=4,
                      mask=MaskSpec("causal", blocked_cells=((3, 1),)), score="dot", temperature=0.7,
                      backend="numpy", head=2, view="pipeline")
    window = make_window(session)
    before = window.results.result.attentions().copy()
    path = tmp_path / "mine.attnsession"
    assert window.files.save_to(path)
    assert window.windowTitle() == "attnstudio — mine.attnsession"
    window.close()
    other = make_window(Session(backend="numpy"))
    assert other.files.open_path(path)
    wait_for_result(qtbot, other, lambda r: r.heads == 3)
    assert other.session_model.session == Session.load(path)
    np.testing.assert_array_equal(other.results.result.attentions(), before)
    assert other.tabs.currentWidget() is other.views.containers["pipeline"]
    assert other.files.recent_files()[0] == str(path)


def test_a_corrupted_session_is_rejected_without_touching_it(make_window, tmp_path):
    window = make_window()
    path = tmp_path / "broken.attnsession"
    path.write_bytes(b'{"format": "attnstudio-session", "version": 1, "session": {"text": "half')
    before = window.session_model.session
    assert not window.files.open_path(path)
    assert "damaged or truncated" in window.statusBar().currentMessage()
    assert path.read_bytes().endswith(b'"half') and window.session_model.session == before
    for box in window.findChildren(QMessageBox):
        box.close()


def test_unknown_fields_open_with_a_note(make_window, tmp_path):
    window = make_window()
    document = Session(text="Hello there.").to_json_dict()
    document["session"]["future_knob"] = 3
    path = tmp_path / "extra.attnsession"
    path.write_text(json.dumps(document))
    assert window.files.open_path(path)
    assert "future_knob" in window.statusBar().currentMessage()
    assert window.session_model.session.text == "Hello there."


def test_saving_to_a_folder_path_fails_clearly(make_window, tmp_path):
    window = make_window()
    assert not window.files.save_to(tmp_path)
    assert "is a folder" in window.statusBar().currentMessage()
    for box in window.findChildren(QMessageBox):
        box.close()


def test_autosave_and_recovery_after_a_crash(make_window, qtbot, settings, tmp_path):
    window = make_window()
    window.controls.text.setPlainText("Unsaved work.")
    qtbot.waitUntil(lambda: window.files.autosave_path().is_file(), timeout=10_000)
    crashed_autosave = window.files.autosave_path()
    assert Session.load(crashed_autosave).text == "Unsaved work."
    # a crash: the window never closes; its lock is released as the dying process's would be
    window.controller.shutdown()
    window.views["profiler"].shutdown()
    window.files._lock.unlock()
    again = make_window(Session(backend="numpy"), restore=True)
    box = again.files.recovery_box
    assert box is not None and box.isVisible() and "did not close properly" in box.text()
    assert crashed_autosave.is_file(), "kept until the user answers"
    box.done(QMessageBox.Yes)
    qtbot.waitUntil(lambda: again.session_model.session.text == "Unsaved work.")
    # restored as an untitled session: Save asks for a name, nothing joins Recent files, the crash file is gone
    assert again.files.current_path is None and "recovered" in again.windowTitle()
    assert not again.files.recent_files()
    assert not crashed_autosave.exists()
    assert Session.load(again.files.autosave_path()).text == "Unsaved work."


def test_cli_export_views_and_sessions(tmp_path):
    for suffix in ("png", "svg", "pdf"):
        done = run_cli("export", "The cat sat on the mat.", "-o", str(tmp_path / f"v.{suffix}"), "--view", "pipeline",
                       "--layer", "2", "--head", "3", "--mask", "causal")
        assert done.returncode == 0, done.stderr
    assert QImage(str(tmp_path / "v.png")).width() >= 2000
    check_svg(tmp_path / "v.svg", "layer 2/6", "head 3/12")
    check_pdf(tmp_path / "v.pdf")
    Session(text="Sessions export too.", backend="numpy").save(tmp_path / "s.attnsession")
    done = run_cli("export", "--session", str(tmp_path / "s.attnsession"), "--out-dir", str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "all" / "report.html").exists() and (tmp_path / "all" / "heads.svg").exists()


def test_cli_export_errors_are_one_line(tmp_path):
    for args, message in ((["hi", "-o", str(tmp_path / "x.gif")], "output must end in"),
                          (["hi", "-o", str(tmp_path / "x.png"), "--layer", "9"], "--layer must be from 1 to 6"),
                          (["--session", str(tmp_path / "nope.attnsession"), "--out-dir", str(tmp_path)],
                           "cannot read"),
                          (["--session", str(tmp_path / "nope.attnsession")], "needs --out-dir")):
        done = run_cli("export", *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def caption_texts(path) -> list[str]:
    """The caption drawn at the foot of an exported SVG (drawn last; word-wrapped lines joined)."""
    root = ElementTree.fromstring(path.read_text(encoding="utf-8"))
    texts = ["".join(node.itertext()).strip() for node in root.iter() if node.tag.endswith("text")]
    starts = [i for i, text in enumerate(texts) if text.startswith("attnstudio ·")]
    return [" ".join(texts[i:j]) for i, j in zip(starts, [*starts[1:], len(texts)], strict=True)]


def test_each_session_figure_has_a_caption_that_describes_it(make_window, tmp_path):
    """The profiler figure describes its sweep (kernels, lengths, backend, dtype, heads, d_k), not an attention
    head; the attention views describe the model, layer and head. Read from the drawn text and the pixels."""
    lengths = (64, 128, 256, 512, 1024, 2048, 4096)
    profile = {"config": {"lengths": list(lengths), "kernels": ["naive", "tiled"], "backends": ["numpy"],
                          "heads": 4, "d_k": 32, "dtype": "float64", "repeats": 3, "window": 64,
                          "memory_budget_bytes": None},
               "points": [{"n": n, "kernel": k, "backend": "numpy", "status": "ok", "median_s": 1e-9 * n * n,
                           "peak_bytes": 32 * n * n, "theoretical_bytes": 32 * n * n}
                          for k in ("naive", "tiled") for n in lengths]}
    window = make_window(Session(backend="numpy", layer=1, head=3, profile=profile))
    window.views["profiler"].shutdown()
    out = tmp_path / "export"
    assert window.files.export_session_to(out)
    profiler_caption = caption_texts(out / "profiler.svg")
    assert profiler_caption == ["attnstudio · profiler · kernels: naive, tiled · n 64–4096 (7 lengths) · "
                                "backend: numpy · float64 · 4 heads · d_k 32 · median of 3 runs"], profiler_caption
    heatmap_caption = caption_texts(out / "heatmap.svg")
    assert len(heatmap_caption) == 1 and "layer 2/6 · head 4/12" in heatmap_caption[0], heatmap_caption
    # The pixels: the caption bands of the two PNGs differ (different words), and each has ink.
    profiler_png, heatmap_png = image_array(out / "profiler.png"), image_array(out / "heatmap.png")
    band = 2 * 28  # CAPTION_HEIGHT at the default scale 2
    profiler_band, heatmap_band = profiler_png[-band:].mean(axis=2), heatmap_png[-band:].mean(axis=2)
    assert (profiler_band < 128).sum() > 200 and (heatmap_band < 128).sum() > 200
    width = min(profiler_band.shape[1], heatmap_band.shape[1])
    assert np.abs(profiler_band[:, :width] - heatmap_band[:, :width]).max() > 100
    report = (out / "report.html").read_text()
    assert "profiler: attnstudio · profiler · kernels: naive, tiled" in report


def test_the_position_bias_figure_says_what_its_colours_are(tmp_path):
    """Position bias colours a signed bias, not a 0–1 weight: its exported caption (the drawn SVG text) says so,
    while the heatmap's caption keeps the weight scale."""
    t5 = str(Path(__file__).resolve().parents[1] / "data" / "tiny-t5")
    captions = {}
    for view in ("position_bias", "heatmap"):
        out = tmp_path / f"{view}.svg"
        done = run_cli("export", "The house is wonderful.", "--model", t5, "--target", "Das Haus", "--view", view,
                       "-o", str(out))
        assert done.returncode == 0, done.stderr
        (captions[view],) = caption_texts(out)
    assert "colour: the bias added to the score, symmetric about 0" in captions["position_bias"], captions
    assert "colour: 0–1" not in captions["position_bias"]
    assert "colour: 0–1" in captions["heatmap"], captions
