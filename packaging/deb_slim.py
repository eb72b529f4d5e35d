#!/usr/bin/env python3
"""Leaves out of the .deb's copy of the bundle the shared libraries that apt installs anyway.

PyInstaller copies the build machine's libraries that Qt links (glib, fontconfig, freetype, X11, xcb, ...). The
.deb's Depends already makes apt install them on the target, so the bundled copies are duplicates there: this
removes each bundled library whose Debian package (on the build machine) is in Depends or is a dependency of a
package in Depends, and the dynamic linker then finds the system's copy. The tar.xz keeps them all (its target
may lack them). Libraries no Depends brings (libxcb-cursor: universe only on Ubuntu; Qt's own ICU; libffi;
NumPy's OpenBLAS) stay.

Usage: python3 packaging/deb_slim.py BUNDLE packaging/deb-control.in      (prints what it removed)
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def depends(control: Path) -> set[str]:
    """The package names in the control file's Depends (every alternative, without versions)."""
    line = next(line for line in control.read_text().splitlines() if line.startswith("Depends:"))
    return {re.sub(r"\(.*?\)|:any", "", choice).strip() for part in line[len("Depends:"):].split(",")
            for choice in part.split("|")}


def closure(packages: set[str]) -> set[str]:
    """The packages and everything they depend on, as installed on this machine."""
    seen: set[str] = set()
    todo = list(packages)
    while todo:
        package = todo.pop()
        if package in seen:
            continue
        seen.add(package)
        done = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", package],
                              capture_output=True, text=True, check=False)
        for part in done.stdout.split(","):
            name = re.sub(r"\(.*?\)|:any", "", part.split("|")[0]).strip()
            if name:
                todo.append(name)
    return seen


def owner(library: str) -> str | None:
    """The Debian package holding /usr/lib/<triplet>/<library> on this machine."""
    done = subprocess.run(["dpkg", "-S", f"*/{library}"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        package, _, path = line.partition(": ")
        if path.startswith(("/usr/lib/", "/lib/")):
            return package.split(":")[0]
    return None


def main(bundle: Path, control: Path) -> int:
    provided = closure(depends(control))
    removed = 0
    for path in sorted((bundle / "_internal").glob("lib*.so*")):
        if path.is_symlink() or path.name.startswith("libpython"):
            continue
        package = owner(path.name)
        if package in provided:
            removed += path.stat().st_size
            print(f"deb_slim: {path.name}: apt installs it ({package})")
            path.unlink()
    print(f"deb_slim: {removed / 2**20:.1f} MiB of libraries left to the system's copies")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
