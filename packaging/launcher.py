"""Entry point of the frozen app (PyInstaller runs this file).

Before anything imports Qt, the window and `export` need a few system libraries and fonts that the bundle does
not carry (the .deb declares them; the tar.xz cannot). Where one is missing, say so in one line, with the
packages that provide it, instead of Qt's ImportError.
"""
import ctypes
import glob
import os
import sys

# soname or need -> (what it is, Debian/Ubuntu package, Fedora package)
NEEDS = {
    "libGL.so.1": ("OpenGL", "libgl1", "mesa-libGL"),
    "libEGL.so.1": ("EGL", "libegl1", "mesa-libEGL"),
    "libxcb.so.1": ("X11 client library", "libxcb1", "libxcb"),
    "fonts": ("fonts with a fontconfig configuration", "fontconfig fonts-dejavu-core", "fontconfig dejavu-sans-fonts"),
}
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
FONT_PATTERNS = ("*.ttf", "*.otf", "*.ttc", "*.pfb", "*.pcf", "*.pcf.gz")
CONSOLE_COMMANDS = ("compute", "profile")  # no Qt: they run on a server without any of it


def has_fonts(environ=os.environ) -> bool:
    """A fontconfig configuration and at least one font file in the places it looks by default."""
    config = environ.get("FONTCONFIG_FILE") or os.path.join(environ.get("FONTCONFIG_PATH", "/etc/fonts"), "fonts.conf")
    if not os.path.isfile(config):
        return False
    for folder in FONT_DIRS:
        root = os.path.expanduser(folder)
        for pattern in FONT_PATTERNS:
            if next(iter(glob.iglob(os.path.join(root, "**", pattern), recursive=True)), None):
                return True
    return False


def missing_system_parts() -> list[str]:
    """The keys of NEEDS this system lacks."""
    missing = []
    for soname in ("libGL.so.1", "libEGL.so.1", "libxcb.so.1"):
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    if not has_fonts():
        missing.append("fonts")
    return missing


def missing_message(missing: list[str]) -> str:
    what = ", ".join(f"{key} ({NEEDS[key][0]})" if key != "fonts" else NEEDS[key][0] for key in missing)
    debian = " ".join(NEEDS[key][1] for key in missing)
    fedora = " ".join(NEEDS[key][2] for key in missing)
    return (f"attnstudio: this system lacks {what}; install them with `sudo apt-get install {debian}` "
            f"(Debian/Ubuntu) or `sudo dnf install {fedora}` (Fedora)")


def needs_qt(argv: list[str]) -> bool:
    """Whether this command line opens Qt: the window, the self-test and `export` do; --help and compute do not."""
    if any(arg in ("-h", "--help", "--version") for arg in argv):
        return False
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    return command not in CONSOLE_COMMANDS


def main() -> int:
    if sys.platform.startswith("linux") and needs_qt(sys.argv[1:]):
        missing = missing_system_parts()
        if missing:
            print(missing_message(missing), file=sys.stderr)
            return 1
    from attnstudio.cli import main as attnstudio_main  # noqa: PLC0415 - only after the system libraries are checked

    return attnstudio_main()


if __name__ == "__main__":
    sys.exit(main())
