#!/usr/bin/env python3
"""Fails when any ELF file of a bundle needs a newer glibc (or libstdc++) than the package declares.

The dynamic linker refuses to start a program when a library it loads asks for a symbol version the system's
libc does not have (`version 'GLIBC_2.36' not found`), so the newest GLIBC_ version any bundled file
requires is the oldest system the bundle runs on. `objdump -p` lists each file's version references
(what it needs from libc.so.6, libstdc++.so.6, ...), not the versions it defines itself.

Usage: packaging/check_abi.py FOLDER [--glibc 2.35] [--glibcxx 3.4.30]    (exit 1 above a floor, 2 on bad input)
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# What the .deb's Depends promises (packaging/deb-control.in) and the README's list of tested systems.
GLIBC_FLOOR = "2.35"  # Ubuntu 22.04; Debian 12 has 2.36
GLIBCXX_FLOOR = "3.4.30"  # libstdc++6 from GCC 12: Ubuntu 22.04 and Debian 12
ELF_MAGIC = b"\x7fELF"
REFERENCE = re.compile(r"^\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+\d+\s+(GLIBC|GLIBCXX|CXXABI)_([0-9.]+)\s*$")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def elf_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    found.append(path)
    return found


def required_versions(path: Path) -> dict[str, str]:
    """The newest version of each of GLIBC, GLIBCXX and CXXABI the file requires, e.g. {'GLIBC': '2.34'}."""
    dump = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True, check=False).stdout
    newest: dict[str, str] = {}
    for line in dump.splitlines():
        match = REFERENCE.match(line)
        if match:
            family, version = match.groups()
            if family not in newest or version_key(version) > version_key(newest[family]):
                newest[family] = version
    return newest


def check(folder: Path, glibc: str = GLIBC_FLOOR, glibcxx: str = GLIBCXX_FLOOR) -> tuple[list[str], list[str]]:
    """(report lines, problems): every ELF file's newest requirement, and those above the floors."""
    floors = {"GLIBC": glibc, "GLIBCXX": glibcxx}
    report, problems = [], []
    files = elf_files(folder)
    if not files:
        problems.append(f"{folder}: no ELF files found")
    newest_overall: dict[str, tuple[str, Path]] = {}
    for path in files:
        for family, version in required_versions(path).items():
            if family not in newest_overall or version_key(version) > version_key(newest_overall[family][0]):
                newest_overall[family] = (version, path)
            floor = floors.get(family)
            if floor and version_key(version) > version_key(floor):
                problems.append(f"{path.relative_to(folder)} needs {family}_{version}, above the declared "
                                f"{family}_{floor}")
    report.append(f"{len(files)} ELF files in {folder}")
    for family, (version, path) in sorted(newest_overall.items()):
        report.append(f"newest {family} needed: {version} ({path.relative_to(folder)})")
    return report, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--glibc", default=GLIBC_FLOOR, help=f"highest GLIBC_ version allowed (default {GLIBC_FLOOR})")
    parser.add_argument("--glibcxx", default=GLIBCXX_FLOOR,
                        help=f"highest GLIBCXX_ version allowed (default {GLIBCXX_FLOOR})")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"check_abi: {args.folder} is not a folder", file=sys.stderr)
        return 2
    report, problems = check(args.folder, args.glibc, args.glibcxx)
    print("\n".join(report))
    for problem in problems:
        print(f"check_abi: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
