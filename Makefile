VENV ?= .venv
PY := $(VENV)/bin/python
# Quiet set-up: no progress bars, no pip version nag. setuptools' editable install always ends with an
# informational box ("Editable installation. Please be careful with folders ... with the same name as your
# package"); it asks nothing of us, so exactly that warning is ignored (PYTHONWARNINGS reaches the build backend).
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_PROGRESS_BAR := off
PIP := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Where torch comes from. Empty: pip's own configuration (here the local CPU build). Elsewhere,
# `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu` puts the CPU build into .venv first, so that pip
# does not fetch the CUDA one from PyPI (several GB).
TORCH_INDEX ?=
MIN_VENV ?= .venv-min

.PHONY: demo test test-min smoke-wheel lint setup clean bench

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q --upgrade pip
	$(if $(TORCH_INDEX),$(PIP) install -q -c constraints.txt torch --index-url $(TORCH_INDEX))
	$(PIP) install -q -c constraints.txt -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/convcost compare --cin 8 --cout 64 -k 3

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check convcost tests $(wildcard benchmarks)
	$(VENV)/bin/ruff format --check convcost tests $(wildcard benchmarks)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

# The suite on the declared minimum of every dependency (constraints-min.txt), in a venv of its own.
MIN_PIP := PYTHONWARNINGS="ignore:Editable installation" $(MIN_VENV)/bin/python -m pip

$(MIN_VENV)/.installed: pyproject.toml constraints-min.txt
	python3 -m venv $(MIN_VENV)
	$(MIN_PIP) install -q --upgrade pip
	$(if $(TORCH_INDEX),$(MIN_PIP) install -q -c constraints-min.txt torch --index-url $(TORCH_INDEX))
	$(MIN_PIP) install -q -c constraints-min.txt -e '.[test]'
	touch $@

test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest

# A fresh venv with only the built wheel (and torch), used from an empty folder.
smoke-wheel: $(TEST_STAMP)
	TORCH_INDEX="$(TORCH_INDEX)" scripts/smoke_wheel.sh $(PY)

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) $(MIN_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
