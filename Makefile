# stilts-ds developer entry points. `make demo` and `make test` install into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# Pins proven on the CPU machines this project is developed on (see README).
TORCH_PIN := torch==2.13.0
DEEPSPEED_PIN := deepspeed==0.19.8

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
	$(PIP) install -q $(TORCH_PIN)
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

clean:
	rm -rf $(VENV) runs .pytest_cache
