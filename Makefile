# CryptoViz — `make help` lists the targets. Every target creates or refreshes
# the virtualenv from pyproject.toml first, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The peers of bench/peers.py (quixstreams) pin an older confluent-kafka than ours: own virtualenv.
BENCH_VENV := $(VENV)/bench
BENCH_STAMP := $(BENCH_VENV)/.installed
PGLITE := infra/pglite/node_modules/.package-lock.json
DASHBOARD := api/dashboard/node_modules/.package-lock.json
BROWSER_DRIVER := tests/api/browser/node_modules/.package-lock.json

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> preparing virtualenv $(VENV) (Python >= 3.11)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ required, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(BENCH_STAMP): pyproject.toml $(STAMP)
	@echo "==> preparing the peers' virtualenv $(BENCH_VENV) (pyproject.toml's bench group)"
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	@$(BENCH_VENV)/bin/python -m pip install -q --group bench
	@touch $(BENCH_STAMP)

venv: $(STAMP) $(BENCH_STAMP) ## Create or refresh the virtualenvs from pyproject.toml (ours, and the peers')

$(PGLITE): infra/pglite/package.json infra/pglite/package-lock.json
	@echo "==> installing the PGlite/TimescaleDB test server (npm ci)"
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	@npm ci --silent --no-audit --no-fund --prefix infra/pglite
	@touch $(PGLITE)

$(DASHBOARD): api/dashboard/package.json api/dashboard/package-lock.json
	@echo "==> installing the dashboard's chart library (npm ci)"
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	@npm ci --silent --no-audit --no-fund --prefix api/dashboard
	@touch $(DASHBOARD)

# playwright-core drives the system's Chromium; it never downloads a browser.
$(BROWSER_DRIVER): tests/api/browser/package.json tests/api/browser/package-lock.json
	@echo "==> installing the browser test driver (playwright-core, npm ci)"
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	@PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund --prefix tests/api/browser
	@touch $(BROWSER_DRIVER)

chromium: ## Install Debian's chromium for the dashboard's browser test, if /usr/bin/chromium is missing
	@command -v /usr/bin/chromium >/dev/null || { \
		echo "==> installing chromium (apt-get) for the dashboard's browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

up: $(STAMP) $(DASHBOARD) ## Run the whole system on embedded defaults until Ctrl-C (REPLAY=1: offline replay of real candles; REPLAY_FILES=a.csv:b.csv names others; CLUSTER=1: scaled out)
	@$(if $(REPLAY_FILES),CRYPTOVIZ_REPLAY_FILES="$(REPLAY_FILES)" )$(PY) -m infra.stack up $(if $(REPLAY)$(REPLAY_FILES),--replay,) $(if $(CLUSTER),--cluster,)

migrate: $(STAMP) ## Apply the database migrations (DATABASE_URL, or the embedded server)
	@$(PY) -m infra.stack migrate

import: $(STAMP) ## Load candle files into the database as price history and warm the forecast models, idempotently (FILES="a.csv b.csv"; default: ../shared/fixtures/real/market)
	@$(PY) -m flows.import_prices $(FILES)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

test: $(STAMP) $(BENCH_STAMP) $(PGLITE) $(DASHBOARD) $(BROWSER_DRIVER) chromium lint ## Lint, type-check and run the whole test suite against real Kafka, PostgreSQL and Spark
	@$(PY) -m pytest

dashboard-png: $(STAMP) $(PGLITE) $(DASHBOARD) $(BROWSER_DRIVER) chromium ## Refresh docs/dashboard.png from the browser test (make test leaves it alone)
	@CRYPTOVIZ_REFRESH_DASHBOARD_PNG=1 $(PY) -m pytest tests/api/test_dashboard.py -q -k chromium

bench: $(STAMP) ## Run the benchmarks (results in bench/results/, see docs/BENCHMARKS.md)
	@$(PY) -m bench.ingest

peers: $(STAMP) $(BENCH_STAMP) ## Ingestion against quix-streams and Kafka Connect, same 1M messages (docs/BENCHMARKS.md)
	@$(PY) -m bench.peers

backtest: $(STAMP) ## Walk-forward backtest of the forecast models on the real candle files (docs/ANALYTICS.md)
	@$(PY) -m bench.backtest

chaos: $(STAMP) ## Full-size chaos run: the pipeline twice, once under faults; tables compared (docs/RELIABILITY.md; CLUSTER=1: the scaled-out shape's faults)
	@$(PY) -m bench.chaos $(if $(CLUSTER),--cluster,)

test-cluster-chaos: $(STAMP) ## Only the reduced cluster chaos run (part of `make test` too; 10-12 minutes)
	@$(PY) -m pytest tests/bench/test_chaos_cluster.py -q

soak: $(STAMP) ## Load and soak: 20,000 msgs/s for 10 minutes through the pipeline, API under load (docs/RELIABILITY.md)
	@$(PY) -m bench.soak

reliability: chaos soak ## Every reliability run at full size (plus the 1M-frame fuzzer)
	@$(PY) -m bench.fuzz --frames 1000000

clean-state: ## Delete local state (.state/: broker log, database, recovery, checkpoints)
	rm -rf .state

.PHONY: help venv up migrate import lint test bench peers backtest chaos test-cluster-chaos soak reliability clean-state chromium
