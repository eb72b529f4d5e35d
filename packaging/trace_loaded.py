#!/usr/bin/env python3
"""Which of the bundle's Python modules the app never imports: the evidence behind the spec's excludes.

Runs what a user runs (the self-test, compute with both built-in models, export of every view as PNG, SVG and
PDF, a whole-session export, profile) with this checkout's code and a sitecustomize that records sys.modules at
exit; optionally more commands (e.g. the UI tests). Then lists the modules in the last PyInstaller build
(build/pyinstaller/attnstudio/PYZ-00.toc and the bundle's extension modules) that no run imported, largest first.

Usage: QT_QPA_PLATFORM=offscreen python packaging/trace_loaded.py [--also "pytest tests/ui -q -x"] [BUNDLE]
"""
from __future__ import annotations

import argparse
import ast
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The cat sat on the mat because it was tired"
SITECUSTOMIZE = """
import atexit, os, sys
atexit.register(lambda: open(os.environ["ATTNSTUDIO_TRACE"], "a").write("\\n".join(sys.modules) + "\\n"))
"""


def commands(out: Path) -> list[list[str]]:
    run = [sys.executable, "-m", "attnstudio"]
    views = ("heatmap", "heads", "pipeline", "lines", "rollout", "flow", "why", "next_token", "logit_lens")
    return [[*run, "--selftest", str(out / "shot.png")],
            [*run, "compute", TEXT, "-o", str(out / "c.npz")],
            [*run, "compute", TEXT, "--model", "smollm2", "-o", str(out / "s.npz")],
            *([*run, "export", TEXT, "--model", "smollm2", "--view", view, "-o", str(out / f"{view}.png")]
              for view in views),
            [*run, "export", TEXT, "--view", "compare", "--compare", "A dog ran.", "-o", str(out / "compare.svg")],
            [*run, "export", TEXT, "-o", str(out / "heatmap.pdf")],
            [*run, "export", TEXT, "--out-dir", str(out / "session")],
            [*run, "profile", "--n", "64,128", "--repeats", "1", "--json", str(out / "profile.json")]]


def bundled_modules(bundle: Path) -> dict[str, int]:
    """Module name -> size in bytes: the archive's pure modules and the bundle's extension modules."""
    found: dict[str, int] = {}
    toc = ROOT / "build" / "pyinstaller" / "attnstudio" / "PYZ-00.toc"
    for name, path, kind in ast.literal_eval(toc.read_text())[1]:  # (archive, [(module, source, kind), ...])
        if kind == "PYMODULE" and path:
            found[name] = Path(path).stat().st_size if Path(path).exists() else 0
    internal = bundle / "_internal"
    for path in internal.rglob("*.cpython-*.so"):
        relative = path.relative_to(internal).with_suffix("").with_suffix("")
        parts = relative.parts[2:] if relative.parts[:2] == ("python3.11", "lib-dynload") else relative.parts
        found[".".join(parts)] = path.stat().st_size
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default=str(ROOT / "dist" / "attnstudio"))
    parser.add_argument("--also", action="append", default=[], help="another command line to trace")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        (out / "sitecustomize.py").write_text(SITECUSTOMIZE)
        trace = out / "modules.txt"
        env = {**os.environ, "ATTNSTUDIO_TRACE": str(trace), "QT_QPA_PLATFORM": "offscreen",
               "PYTHONPATH": os.pathsep.join([folder, str(ROOT), os.environ.get("PYTHONPATH", "")])}
        for command in [*commands(out), *(shlex.split(line) for line in args.also)]:
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
            print(f"rc {done.returncode}: {' '.join(command[1:6])}", file=sys.stderr)
        imported = set(trace.read_text().split())
    unused = {name: size for name, size in bundled_modules(Path(args.bundle)).items() if name not in imported}
    for name, size in sorted(unused.items(), key=lambda item: -item[1]):
        print(f"{size / 1024:9.1f} KiB  {name}")
    print(f"{sum(unused.values()) / 2**20:9.2f} MiB in {len(unused)} modules never imported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
