"""`attnstudio --selftest`: the real platform where there is a display, and a failure when text cannot be drawn."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from PySide6.QtGui import QFont, QFontDatabase, QFontMetrics, QImage
from PySide6.QtWidgets import QLabel

from attnstudio.ui.selftest import choose_platform, missing_glyphs, visible_texts
from tests.conftest import PROJECT_ROOT

EMPTY_FONTCONFIG = '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig></fontconfig>\n'


def selftest(tmp_path, env: dict, wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**env, "XDG_CONFIG_HOME": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([*wrapper, sys.executable, "-m", "attnstudio", "--selftest", str(tmp_path / "shot.png")],
                          capture_output=True, check=False, text=True, cwd=tmp_path, env=env, timeout=120)


def without(*names: str) -> dict:
    return {key: value for key, value in os.environ.items() if key not in names}


def test_the_platform_is_forced_only_where_there_is_no_display():
    assert choose_platform({}) == "offscreen"
    assert choose_platform({"DISPLAY": ":5"}) is None
    assert choose_platform({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert choose_platform({"QT_QPA_PLATFORM": "xcb"}) is None


def test_the_labels_text_has_glyphs_and_a_character_no_font_has_is_caught(make_window):
    window = make_window()
    texts = visible_texts(window)
    assert "Heatmap" in " ".join(texts) and len(texts) > 20
    assert missing_glyphs(window) is None
    families = QFontDatabase.families()
    unknown = next(ch for ch in "\U00013000\U00016A40\U0001E900\U00011A00"
                   if not any(QFontMetrics(QFont(family)).inFontUcs4(ord(ch)) for family in families))
    label = QLabel(f"layer {unknown}", window.controls)
    try:
        problem = missing_glyphs(window)
        assert problem is not None and unknown in problem and "no glyph in any font" in problem
    finally:
        label.deleteLater()


def test_without_fonts_the_selftest_fails_with_one_line(tmp_path):
    config = tmp_path / "fonts.conf"
    config.write_text(EMPTY_FONTCONFIG)
    done = selftest(tmp_path, {**without("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"),
                               "FONTCONFIG_FILE": str(config)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "selftest: failed: no fonts are installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_display_it_runs_offscreen(tmp_path):
    done = selftest(tmp_path, without("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    assert done.returncode == 0, done.stderr
    assert "on the offscreen platform" in done.stdout and "text drawn with" in done.stdout


def test_with_a_display_it_uses_xcb_and_fails_where_the_display_cannot_be_used(tmp_path):
    assert shutil.which("xvfb-run"), "packaging/system-deps.sh installs xvfb"
    wrapper = ("xvfb-run", "-a", "-s", "-screen 0 1280x900x24")
    done = selftest(tmp_path, without("QT_QPA_PLATFORM"), wrapper)
    assert done.returncode == 0, done.stderr
    assert "on the xcb platform" in done.stdout
    image = QImage(str(tmp_path / "shot.png"))
    assert image.width() >= 800 and image.height() >= 500
    # A display that cannot be used is a failed self-test, not a quiet offscreen pass.
    broken = selftest(tmp_path, {**without("QT_QPA_PLATFORM", "WAYLAND_DISPLAY"), "DISPLAY": ":987"})
    assert broken.returncode != 0 and "selftest: first heatmap painted" not in broken.stdout
