# smokehouse — `make run` (everything, embedded) and `make test` work on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=
# Tests run in parallel (pytest-xdist): most of their time is spent waiting on real processes and
# services, so even two cores keep three workers busy. Groups that must share one worker are in
# tests/conftest.py (XDIST_GROUPS); each worker has its own databases, Redis db and names.
# Four for the fast set: on a two-core machine that took 5:00 where three took 5:41 (with
# light editing beside it; 2026-12-06, 4,016 tests). The slow set keeps three: its tests kill
# and time real processes.
TEST_WORKERS ?= 4
SLOW_TEST_WORKERS ?= 3
PYTEST_XDIST ?= -n $(TEST_WORKERS) --dist loadgroup

.PHONY: install run test test-slow fuzz lint format bench compose-check clean

install: ## Create .venv with every dependency pinned in uv.lock (installs uv with pip if missing)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet --compile-bytecode
	@# Precompiled bytecode: worker processes start in ~1.5 s instead of ~4 s, which is what
	@# lets the autoscaler start a first task within 2 s (PYTHONDONTWRITEBYTECODE is often set).
	@$(BIN)/python -m compileall -q app workers >/dev/null
	@test -x $(BIN)/smokehouse

run: install ## The whole system in embedded mode: API, MQTT broker, workers, scheduler
	$(BIN)/smokehouse run

# `make test` is the fast set (under 5 minutes on two cores). Tests marked slow -- processes
# killed and restarted, failovers, the browser, Podman, the autoscaler's real workers -- are
# `make test-slow`; CI runs both (`make test TEST_MARK=` runs everything at once).
TEST_MARK ?= not slow
test: install ## The tests not marked slow, in parallel (real services when configured; see .ci/run)
	$(BIN)/pytest $(PYTEST_XDIST) $(if $(TEST_MARK),-m "$(TEST_MARK)") --durations=25 $(PYTEST_ARGS)

test-slow: ## The tests marked slow (CI runs them after `make test`)
	$(MAKE) test TEST_MARK=slow TEST_WORKERS=$(SLOW_TEST_WORKERS)

# The fuzz tests also run in `make test` with a few examples each; this runs them with more.
FUZZ_EXAMPLES ?= 200
fuzz: install ## The security fuzzers (tests/security, -m fuzz) with $(FUZZ_EXAMPLES) examples per test
	SMOKEHOUSE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest $(PYTEST_XDIST) tests/security -m fuzz $(PYTEST_ARGS)

lint: install ## ruff (lint + format check), mypy (strict on app/ and workers/), import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

compose-check: install ## The README's production path for real: images built here (Podman, Debian), podman-compose up, driven as a user would
	$(BIN)/python deploy/compose-check/check.py

bench: install ## Every benchmark under bench/; each prints one JSON line last
	@set -e; for b in $(filter-out bench/common.py bench/%_handlers.py,$(wildcard bench/*.py)); do \
		echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .smokehouse .pytest_cache .mypy_cache .ruff_cache
