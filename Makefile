# The README's two set-up commands: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
JS_STAMP := node_modules/.installed
# Set-up steps that take a minute show the time so far and their latest line (scripts/progress.py).
PROGRESS := $(PYTHON) scripts/progress.py

.PHONY: run test lint typecheck unit e2e bench fuzz package offline services chromium deps clean

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
		|| { echo "make: install Python 3.11 or newer (python3)"; exit 1; }
	@$(PROGRESS) "creating $(VENV)" -- $(PYTHON) -m venv $(VENV)
	@$(PROGRESS) "upgrading pip" -- $(BIN)/python -m pip install --upgrade pip
	@$(PROGRESS) "installing the relay and its Python tools (about 1.5 min the first time)" -- \
		$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	@touch $@

$(JS_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: install Node.js 20 and npm"; exit 1; }
	@$(PROGRESS) "installing pusher-js and the Node test tools (about 1.5 min the first time)" -- \
		npm ci --no-audit --no-fund --loglevel=http
	@touch $@

deps: $(PY_STAMP) $(JS_STAMP)

## run: start the relay on the embedded local provider (http://127.0.0.1:8000)
run: $(PY_STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(JS_STAMP); \
		else echo "make: npm not found; examples/listen.mjs needs Node.js 20 and npm"; fi
	$(BIN)/relay serve

## test: lint, type-check, then every test (unit, contract, database, end to end)
test: deps services chromium lint typecheck
	$(BIN)/pytest

## services: Redis and PostgreSQL for the tests (started from the installed binaries if down)
services:
	@scripts/ensure-services

## chromium: Debian's browser, which Playwright drives in tests/e2e/test_console.py (Playwright's
## own browser download is never used); installed with apt-get where missing
chromium:
	@command -v chromium >/dev/null || { \
		command -v apt-get >/dev/null || { echo "make: install Chromium (/usr/bin/chromium) for the console's browser tests"; exit 1; }; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$(PROGRESS) "installing chromium (apt-get) for the browser tests" -- \
			sh -c "$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium"; }

## lint: ruff, and the import contracts (app -> providers -> core, no cycles) in pyproject.toml
lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(PY_STAMP)
	$(BIN)/mypy

unit: $(PY_STAMP)
	$(BIN)/pytest tests/unit

e2e: deps chromium
	$(BIN)/pytest tests/e2e

## bench: every benchmark against its baseline; writes docs/benchmarks.md; fails on a missed target
bench: deps
	$(BIN)/python -m bench.run

## package: the Lambda zip `serverless deploy --package .serverless` ships, for PROVIDER (local,
## pusher, ably, supabase, apigateway); STAGE and REGION as you deploy; JWKS=1 adds RS256/ES256
PROVIDER ?= local
PACKAGE_DIR ?= .serverless
package: deps
	$(BIN)/python -m infra.lambda_build $(PROVIDER) $(if $(JWKS),--jwks)
	SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off node_modules/.bin/serverless package \
		--param provider=$(PROVIDER) $(if $(STAGE),--stage $(STAGE)) $(if $(REGION),--region $(REGION)) \
		--package $(PACKAGE_DIR)

## offline: the apigateway provider's stack on this machine, no AWS account (moto, its tables and
## secrets, serverless offline on ports 3000-3003); prints the client settings; Ctrl-C stops it.
## The apigateway end-to-end tests start it the same way (infra/offline.py)
offline: deps
	$(BIN)/python -m infra.offline $(OFFLINE_ARGS)

## fuzz: schemathesis over every route of the OpenAPI, long run (RELAY_FUZZ_EXAMPLES, default 500)
fuzz: $(PY_STAMP)
	RELAY_FUZZ_EXAMPLES=$${RELAY_FUZZ_EXAMPLES:-500} $(BIN)/pytest tests/fuzz -q --timeout=0

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
