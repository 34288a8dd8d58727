VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint setup clean bench

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q --upgrade pip
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
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
