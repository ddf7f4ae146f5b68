# The commands a user runs. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run serve test lint chat bench clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev: requirements-dev.txt requirements.txt $(BIN)/.runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(BIN)/.runtime  ## serve the webhook on HOST:PORT (development mode unless RESPONDER_ENV says otherwise)
	$(BIN)/python serve.py run

serve: $(BIN)/.runtime  ## the production server (workers from WEB_CONCURRENCY); needs production settings
	$(BIN)/python serve.py serve

chat: $(BIN)/.runtime  ## a phone in the terminal against the in-process app (ARGS="--url ... --token ...")
	RESPONDER_ENV=$${RESPONDER_ENV:-development} $(BIN)/flask --app responder chat $(ARGS)

test: $(BIN)/.dev  ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(BIN)/.dev  ## the side-by-side benchmark (shipped vs tutorial baseline vs floor); writes bench/RESULTS.md
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py

lint: $(BIN)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
