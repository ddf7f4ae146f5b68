# The commands a user runs. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NEEDS_PYTHON := 3.11

.DEFAULT_GOAL := help
.PHONY: help run serve check test lint chat bench mutate clean

help:  ## list the commands (installs nothing)
	@echo "make <command>:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  \1\t/' | expand -t 10

$(BIN)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "error: needs Python >= $(NEEDS_PYTHON) as '$(PYTHON)' (found: $$($(PYTHON) --version 2>&1)); try make PYTHON=python3.11 ..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	touch $@

$(BIN)/.runtime: requirements.txt $(BIN)/.python
	@echo "installing dependencies into $(VENV) (first run, about a minute) ..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev: requirements-dev.txt requirements.txt pyproject.toml $(BIN)/.runtime
	@echo "installing development tools into $(VENV) (first run, about a minute) ..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .  # registers `flask chat`
	touch $@

run: $(BIN)/.runtime  ## serve the webhook on HOST:PORT (development mode unless RESPONDER_ENV says otherwise)
	$(BIN)/python serve.py run

serve: $(BIN)/.runtime  ## the production server, gunicorn -c gunicorn.conf.py (workers: WEB_CONCURRENCY); needs production settings
	$(BIN)/python serve.py serve

check: $(BIN)/.runtime  ## validate the settings and print the URL to paste into the Twilio Console
	$(BIN)/python serve.py check

chat: $(BIN)/.dev  ## a phone in the terminal against the in-process app (ARGS="--url ... --token ...")
	RESPONDER_ENV=$${RESPONDER_ENV:-development} $(BIN)/flask --app responder chat $(ARGS)

test: $(BIN)/.dev  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(BIN)/.dev  ## the side-by-side benchmark (shipped vs tutorial baseline vs Flask floor); writes bench/RESULTS.md
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py

mutate: $(BIN)/.dev  ## mutation testing of the service modules (mutmut, fast tests, 2 workers; about 30 minutes)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 > /dev/null || true
	$(BIN)/python -m devtools.mutation_report

lint: $(BIN)/.dev  ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info mutants
