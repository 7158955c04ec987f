# backchannel: the two commands that matter on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# `make demo` needs only what the package needs at run time; `make test` adds the dev toolchain
# (pytest, hypothesis, ruff, mypy, import-linter, playwright) to the same virtualenv, so either
# order works and `. .venv/bin/activate` puts `backchannel` on PATH after either.
RUNTIME_STAMP := $(VENV)/.runtime-stamp

.PHONY: venv test lint demo bench bench-scale chaos vectors clean chromium postgresql haproxy screenshots

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "backchannel needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(RUNTIME_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "backchannel needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUNTIME_STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools bench
	$(VENV)/bin/mypy src/backchannel tests
	$(VENV)/bin/lint-imports

test: lint chromium postgresql haproxy
	$(VENV)/bin/pytest -q -p no:cacheprovider

# The console's browser tests drive Debian's chromium (never a browser Playwright downloads).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The relay's PostgreSQL store is tested on a throwaway cluster made with Debian's postgresql
# (the tests run initdb and pg_ctl themselves on a free port; they use no cluster the package made).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)

# Several relay processes behind one address are tested behind Debian's haproxy, started by the
# test itself on 127.0.0.1 with a generated configuration (never the package's service).
haproxy:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)

screenshots: $(STAMP) chromium
	BACKCHANNEL_SCREENSHOTS=docs/images $(VENV)/bin/pytest -q -p no:cacheprovider tests/console

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/backchannel demo

# One line against the minimal baseline relay (medians of 3 runs) and a small load-generator run;
# figures and ratios go to bench/results/latest.json. Under 10 minutes (docs/PERFORMANCE.md).
# Then what cover traffic costs (bench/cover.py: CPU and bandwidth at 1, 10 and 100 frames/s, a relay
# serving 100 lines, the wait for a slot; bench/results/cover.json; about 6 minutes more).
bench: $(STAMP)
	$(PY) bench/bench_line.py --scale
	$(PY) bench/cover.py

# The scale benchmark: 1, 100 and 1,000 stations with 10,000 mailboxes on one relay, on SQLite
# and on a throwaway PostgreSQL cluster (bench/results/scale.json; bounded, about 10 minutes).
bench-scale: $(STAMP) postgresql
	$(PY) bench/loadgen.py --stations 1,100,1000 --mailboxes 10000 --db sqlite,postgres

# The fault tests alone, harder than in `make test`: three times the kills and the messages, and the
# long variants (BACKCHANNEL_CHAOS=1) of the relays' database faults
# (tests/faults/test_relay_db_faults.py); the summary prints each fault's recovery time.
chaos: $(STAMP)
	BACKCHANNEL_CHAOS=1 BACKCHANNEL_CRASH_KILLS=60 BACKCHANNEL_CRASH_MESSAGES=600 $(VENV)/bin/pytest -q -p no:cacheprovider tests/faults

vectors: $(STAMP)
	$(PY) tools/gen_vectors.py
	$(PY) tools/gen_record_tamper.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/*.egg-info
