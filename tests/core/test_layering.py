"""The architecture's contract: the compute layers never import Qt or pyqtgraph."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT

FORBIDDEN = ("PySide6", "pyqtgraph", "shiboken6")
# cli.py is checked by running it (below): it imports Qt only inside the sub-commands that draw.
QT_FREE = ["core", "models", "engine.py", "session.py", "fileio.py", "errors.py", "limits.py"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_models_and_engine_source_import_no_qt():
    package = PROJECT_ROOT / "attnstudio"
    files = [p for entry in QT_FREE for p in ([package / entry] if entry.endswith(".py")
                                              else sorted((package / entry).rglob("*.py")))]
    assert len(files) >= 10
    offenders = {str(f.relative_to(package)): sorted(m for m in imported_modules(f) if m.split(".")[0] in FORBIDDEN)
                 for f in files}
    assert not {f: m for f, m in offenders.items() if m}


def test_core_never_imports_cupy_at_module_level():
    for path in (PROJECT_ROOT / "attnstudio" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top_level |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(name.startswith("cupy") for name in top_level), path


def test_importing_the_engine_and_running_compute_loads_no_qt():
    code = ("import sys, attnstudio.core, attnstudio.engine, attnstudio.cli\n"
            "from attnstudio.engine import Engine\nfrom attnstudio.session import Session\n"
            "Engine().compute(Session(backend='numpy'))\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_export_never_imports_the_ui():
    """export/ writes finished figures; building and driving views (theme, session model) is ui/'s."""
    files = sorted((PROJECT_ROOT / "attnstudio" / "export").rglob("*.py"))
    assert len(files) >= 3
    offenders = {str(f.relative_to(PROJECT_ROOT)): sorted(m for m in imported_modules(f)
                                                          if m == "attnstudio.ui" or m.startswith("attnstudio.ui."))
                 for f in files}
    assert not {f: m for f, m in offenders.items() if m}


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts, checked by import-linter on this source tree (lazy
    imports inside functions count too): core never imports Qt; core, models, session and engine never
    import ui or export; export never imports ui."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, check=False, text=True, timeout=300)
    assert "export never imports the ui" in done.stdout, done.stdout + done.stderr  # the contracts were read
    assert done.returncode == 0, done.stdout + done.stderr
