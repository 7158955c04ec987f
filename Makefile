# backchannel: the two commands that matter on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint demo bench chaos vectors clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "backchannel needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools bench
	$(VENV)/bin/mypy src/backchannel
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/backchannel demo

bench: $(STAMP)
	$(PY) bench/bench_line.py

chaos: $(STAMP)
	BACKCHANNEL_CHAOS=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/faults

vectors: $(STAMP)
	$(PY) tools/gen_vectors.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/*.egg-info
