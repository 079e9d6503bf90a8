# Everything installs into .venv from PyPI (servers included); nothing is needed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
NODE_STAMP := clients/typescript/node_modules/.installed

.PHONY: setup demo dev test test-fast lint clean age-cli chromium prometheus bench reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# The TypeScript client example and its test need @temporalio/client from npm.
$(NODE_STAMP): clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP)

# The encryption tests decrypt with the real `age` CLI (Debian's package `age`).
age-cli:
	@command -v age >/dev/null 2>&1 || { echo "installing the age CLI (Debian package age)"; \
	  { apt-get update -qq && apt-get install -y -qq age; } >/dev/null 2>&1 || \
	  { echo "could not install age: get it from your package manager (age-encryption.org)"; exit 1; }; }

# The browser tests drive Debian's chromium with Playwright (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Chromium (Debian package chromium)"; \
	  { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 || \
	  { echo "could not install chromium: get it from your package manager"; exit 1; }; }

# tests/test_dashboard.py evaluates the dashboard's queries in a real Prometheus (Debian's).
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { echo "installing Prometheus (Debian package prometheus)"; \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1 || \
	  { echo "could not install prometheus: get it from your package manager"; exit 1; }; }

## make demo: start the embedded stack, back up a sample project, restore-check it, stop.
demo: $(STAMP)
	$(BIN)/python -m devstack demo $(if $(PROJECT),--project $(PROJECT)) $(if $(FORMAT),--format $(FORMAT)) $(if $(STORAGE),--storage $(STORAGE)) $(DEV_ARGS)

## make dev: the embedded stack in the foreground (Web UI on :8233) until Ctrl-C or SIGTERM.
## DEV_ARGS: e.g. --home DIR --temporal-port 0 --ui-port 0 --metrics-port 0 (0: a free port).
dev: $(STAMP)
	$(BIN)/python -m devstack up $(DEV_ARGS)

## make test: every test, against real PostgreSQL, Temporal, S3, Prometheus and a browser (what CI runs).
test: $(STAMP) $(NODE_STAMP) age-cli chromium prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make test-fast: tests/unit and tests/workflow, no server but the time-skipping one (< 1 min).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/workflow $(PYTEST_ARGS)

## make bench: the full workflow against pg_dump -Fc side by side, then 100 tiny backups at once;
## writes bench/results.md and bench/results.png. QUICK=1: small schemas (minutes, not a quarter hour).
BENCH_STAMP := $(VENV)/.bench-$(shell cksum pyproject.toml | cut -d' ' -f1)
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.bench-* && touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)

## make reliability: crash matrix, faults, hostile inputs, secrets audit → reliability/report.md
## (about a quarter hour; tests/reliability/ runs a subset in `make test`).
reliability: $(STAMP) age-cli
	$(BIN)/python reliability/crash_matrix.py
	$(BIN)/python -m reliability.restore_crashes
	$(BIN)/python -m reliability.faults
	$(BIN)/python -m reliability.hostile_inputs
	$(BIN)/python -m reliability.secrets_audit
	$(BIN)/python -m reliability.report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

clean:
	rm -rf .dev .pytest_cache .ruff_cache .mypy_cache
