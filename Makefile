# stilts-ds developer entry points. `make demo` and `make test` install into .venv first.
#
#   make install                    # .venv with this repository's pins
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu   # CPU-only machine, stock pip
#   make demo | make test | make bench | make clean
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# Pins proven on the CPU machines this project is developed on (see README).
TORCH_PIN := torch==2.13.0
DEEPSPEED_PIN := deepspeed==0.19.8
# Where torch comes from. Empty: pip's configured indexes. On a stock Linux pip that is PyPI,
# whose torch==2.13.0 is the CUDA build (GPU nodes want it; several GB). For a CPU-only
# machine, pass PyTorch's CPU wheel index: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: install prereqs demo test bench clean

install: $(VENV)/.installed

# What the install needs from the OS, checked first so that a missing piece is named with
# its Debian package instead of failing deep inside pip or DeepSpeed's op build.
prereqs:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is missing: apt-get install python3.11 (or make PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { echo "$(PYTHON) -m venv is missing: apt-get install python3.11-venv" >&2; exit 1; }
	@$(PYTHON) -c "import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
	  || { echo "the Python headers are missing (DeepSpeed compiles its CPU ops against them): apt-get install python3.11-dev" >&2; exit 1; }
	@command -v c++ >/dev/null 2>&1 || { echo "a C++ compiler is missing (DeepSpeed compiles its CPU communication op on first use): apt-get install g++" >&2; exit 1; }

$(VENV)/.installed: setup.py
	@$(MAKE) --no-print-directory prereqs
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
	$(PIP) install -q $(TORCH_INDEX_ARG) $(TORCH_PIN)
	# deepspeed builds from source; without --no-build-isolation it downloads a new torch.
	$(PIP) install -q --no-build-isolation $(DEEPSPEED_PIN)
	$(PIP) install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/stilts-ds demo

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) tools/bench_span_qa_featurize.py

# Removes the venv AND runs/ (every study output under it, the quick start's included).
clean:
	rm -rf $(VENV) runs .pytest_cache
