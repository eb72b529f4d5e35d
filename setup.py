"""The compiled part of attnstudio: the exact max-flow of attention flow (attnstudio/core/_maxflow.c, plain C
and Python's C API, no NumPy headers). Everything else is in pyproject.toml; `pip install .` builds it (gcc and
Python's headers: packaging/system-deps.sh installs them)."""
import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O2", "-std=c99", "-Wall", "-Wextra"]  # MSVC has its own defaults
setup(ext_modules=[Extension("attnstudio.core._maxflow", ["attnstudio/core/_maxflow.c"], extra_compile_args=FLAGS)])
