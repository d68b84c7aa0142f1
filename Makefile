# Order Health: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration lint typecheck check schema clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create the virtual environment with pinned dependencies.

demo: $(STAMP) ## The main job: embedded broker, warehouse-outage scenario, health index.
	$(BIN)/orderhealth demo

test: $(STAMP) ## The whole suite: unit and integration (real broker, real Delta).
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

schema: $(STAMP) ## Regenerate generated artefacts: the JSON Schema and the metric tables in docs.
	$(BIN)/python -m dataflows.metrics
	$(BIN)/python -m quality.suites
	$(BIN)/python -m orderhealth.superset_bundle
	$(BIN)/python -m schemas.json_schema

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
