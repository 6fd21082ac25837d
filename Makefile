# runyard: `make run` starts it with its demo; `make test` installs everything and runs the whole suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
# The UI's front-end assets (htmx) come from npm, pinned in package-lock.json; nothing is built.
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | sha1sum | cut -c1-12)
PYTHON ?= python3
# Test files run in this many processes (pytest-xdist): most of the suite waits on servers, workers and browsers.
TEST_PROCESSES ?= 3
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test soak lint format system-deps pg pg-stop bench bench-scale screenshots clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP) $(NODE_STAMP)

run: install
	$(BIN)/runyard db upgrade
	$(BIN)/runyard serve --demo --host $(HOST) --port $(PORT)

system-deps:
	scripts/install-system-deps.sh

pg: system-deps
	@scripts/test-postgres.sh start

pg-stop:
	scripts/test-postgres.sh stop

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: install system-deps
	@export RUNYARD_TEST_POSTGRES_URL="$$(scripts/test-postgres.sh start)"; \
	  echo "test PostgreSQL: $$RUNYARD_TEST_POSTGRES_URL"; \
	  $(MAKE) --no-print-directory lint && \
	  $(BIN)/pytest -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile --durations=25

# Issue 16's crash matrix, every crash point on both stores 20 times (`make test` runs each 3 times).
soak: install system-deps
	@export RUNYARD_TEST_POSTGRES_URL="$$(scripts/test-postgres.sh start)"; \
	  RUNYARD_CRASH_REPEAT=20 $(BIN)/pytest -p no:cacheprovider tests/reliability/test_crash_matrix.py

screenshots: install system-deps
	RUNYARD_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -p no:cacheprovider tests/e2e

bench: install
	$(BIN)/python bench/dispatch.py

# Scale-out on the test PostgreSQL: runs/min and launch -> Running with 1, 2, 4 workers (SCALE_ARGS="--quick", or
# "--warehouse-ingest" for the 1,000,000-row ingest into the PostgreSQL warehouse beside DuckDB).
bench-scale: install system-deps
	@export RUNYARD_TEST_POSTGRES_URL="$$(scripts/test-postgres.sh start)"; \
	  $(BIN)/python bench/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .runyard .mypy_cache .ruff_cache
