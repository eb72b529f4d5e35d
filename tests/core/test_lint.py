"""ruff runs clean over the whole tree (the rule set and its reasons are in pyproject.toml's [tool.ruff])."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT

LINTED = ("attnstudio", "tests", "benchmarks", "packaging", "tools")


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           *LINTED], cwd=PROJECT_ROOT, capture_output=True, check=False, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_reads_the_projects_rules(tmp_path):
    """The configuration is the one in pyproject.toml: a file breaking one of its rules is reported."""
    sloppy = tmp_path / "sloppy.py"
    sloppy.write_text("import subprocess\n\n\ndef run():\n    return subprocess.run(['true'])\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           "--config", str(PROJECT_ROOT / "pyproject.toml"), str(sloppy)],
                          cwd=tmp_path, capture_output=True, check=False, text=True, timeout=120)
    assert done.returncode == 1 and "PLW1510" in done.stdout, done.stdout + done.stderr
