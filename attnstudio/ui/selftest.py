"""The self-test the installers run: the real window on the platform the environment gives, and its text.

A self-test that passes while a real launch fails is worse than none, so it forces nothing: it uses the
display platform Qt would use for the user (offscreen only where there is no display at all), and it fails
when the labels' characters have no glyph in any installed font (no fonts, or no fontconfig configuration,
draws every character as an empty box).
"""
from __future__ import annotations

import os

from PySide6.QtGui import QFont, QFontDatabase, QFontInfo, QFontMetrics, QTextDocument
from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QMenu, QTabBar

# What the offscreen fallback needs to know: a display server the user's launch would talk to.
DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY")


def choose_platform(environ: dict | os._Environ = os.environ) -> str | None:
    """The QPA platform to force for the self-test: None keeps what Qt would choose for a real launch."""
    if environ.get("QT_QPA_PLATFORM"):
        return None
    if any(environ.get(name) for name in DISPLAY_VARIABLES):
        return None
    return "offscreen"


def visible_texts(window) -> list[str]:
    """Every label, button, group title, tab and menu text the window shows, as plain text."""
    texts: list[str] = []
    for label in window.findChildren(QLabel):
        if label.textFormat() == 1 or "<" in label.text():  # Qt.RichText, or auto-detected rich text
            document = QTextDocument()
            document.setHtml(label.text())
            texts.append(document.toPlainText())
        else:
            texts.append(label.text())
    texts += [button.text() for button in window.findChildren(QAbstractButton)]
    texts += [box.title() for box in window.findChildren(QGroupBox)]
    for bar in window.findChildren(QTabBar):
        texts += [bar.tabText(i) for i in range(bar.count())]
    for menu in window.findChildren(QMenu):
        texts += [action.text().replace("&", "") for action in menu.actions()]
    return [text for text in texts if text.strip()]


def missing_glyphs(window) -> str | None:
    """None when every character of the window's texts has a glyph; else a sentence saying which do not.

    `QFontMetrics.inFont` (inFontUcs4: PySide6 mangles non-ASCII QChar) of the window's font answers for most
    characters; Qt draws the others from any installed font that has them, so those count as drawn when some
    family in the font database has them.
    Without fonts the database still lists fontconfig's aliases (Sans Serif, ...) but resolves none of them.
    """
    font = window.font()
    if not QFontDatabase.families() or not QFontInfo(font).family():
        return "no fonts are installed (no font family resolves): every character would be drawn as a box"
    characters = sorted({ch for text in visible_texts(window) for ch in text if not ch.isspace() and ch.isprintable()})
    if not characters:
        return "the window shows no text"
    metrics = QFontMetrics(font)
    unresolved = [ch for ch in characters if not metrics.inFontUcs4(ord(ch))]
    if len(unresolved) == len(characters):
        return f"the window's font ({QFontInfo(font).family()}) has none of the labels' characters"
    if unresolved:
        fallbacks = [QFontMetrics(QFont(family)) for family in QFontDatabase.families()]
        unresolved = [ch for ch in unresolved if not any(other.inFontUcs4(ord(ch)) for other in fallbacks)]
    if unresolved:
        shown = "".join(unresolved[:20])
        return (f"{len(unresolved)} of {len(characters)} characters in the window's labels have no glyph in any "
                f"font: {shown}")
    return None
