"""The compiled parts of attnstudio, plain C and Python's C API (no NumPy headers):
- attnstudio/core/_maxflow.c: the exact max-flow of attention flow;
- attnstudio/core/_fewrows.c: a few rows times a weight matrix on every core, the weights read once (live typing
  into a decoder).
Everything else is in pyproject.toml; `pip install .` builds them (gcc and Python's headers:
packaging/system-deps.sh installs them)."""
import sys

from setuptools import Extension, setup

POSIX = sys.platform != "win32"
FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra"] if POSIX else []  # MSVC has its own defaults
# -O3 vectorises the row loops; gnu11 for C11 atomics; POSIX threads for the helpers
FEWROWS_FLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-pthread"] if POSIX else []
setup(ext_modules=[
    Extension("attnstudio.core._maxflow", ["attnstudio/core/_maxflow.c"], extra_compile_args=FLAGS),
    Extension("attnstudio.core._fewrows", ["attnstudio/core/_fewrows.c"], extra_compile_args=FEWROWS_FLAGS,
              extra_link_args=["-pthread"] if POSIX else []),
])
