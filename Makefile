# Order Health: the two set-up commands are `make demo` and `make test`.
# The interpreter: Debian's python3.11 where it can make a virtual environment,
# else python3.11 on the PATH.  Debian builds it with profile-guided and
# link-time optimisation into a static executable; pyenv's default build and a
# plain source build are neither, and the flow ran 3-4% faster on Debian's
# (docs/scaling.md, "An optimised interpreter").  `make PYTHON=...` chooses another.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null && echo /usr/bin/python3.11 || echo python3.11)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: allocator bench native install demo test test-unit test-integration lint typecheck check schema clean superset superset-env browser

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages a target needs: installed when run as root, else named.
# $(call apt_or_ask,WHAT) after the recipe has set $$missing (empty: none).
apt_or_ask = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq $$missing; \
	  else \
	    echo "error: $(1) needs: sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi

# The native core (native/, Rust): built offline from Debian's vendored crates
# (crates.io is not needed), with rustup's cargo if there is one, else Debian's.
export PATH := $(HOME)/.cargo/bin:$(PATH)
NATIVE      := $(VENV)/.native-built
NATIVE_SRC  := native/Cargo.toml native/Cargo.lock native/pyproject.toml native/src/lib.rs native/src/bronze.rs native/src/decode.rs native/src/dwells.rs native/src/facts.rs native/src/fields.rs native/src/intake.rs native/src/lifecycle.rs native/src/outliers.rs native/src/times.rs native/src/view.rs native/orderhealth_native.pyi
NATIVE_DEBS := librust-pyo3-dev librust-ahash-0.7-dev librust-indexmap-dev librust-once-cell-dev

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	@missing=""; command -v cargo >/dev/null || missing="cargo"; \
	dpkg -s $(NATIVE_DEBS) >/dev/null 2>&1 || missing="$$missing $(NATIVE_DEBS)"; \
	$(call apt_or_ask,the native core)
	$(BIN)/python -m pip install --quiet ./native
	touch $(NATIVE)

native: $(NATIVE) ## Build the native core (Rust) into the virtual environment.

# jemalloc, which the `orderhealth` command preloads (dataflows/allocator.py).
allocator: ## Debian's jemalloc for the flow (ORDERHEALTH_MALLOC=system runs without it).
	@missing=""; dpkg -s libjemalloc2 >/dev/null 2>&1 || missing="libjemalloc2"; \
	$(call apt_or_ask,the flow's allocator)

install: $(STAMP) $(NATIVE) allocator ## Create the virtual environment with pinned dependencies, the native core and jemalloc.

demo: $(STAMP) $(NATIVE) allocator ## The main job: embedded broker, warehouse-outage scenario, health index.
	$(BIN)/orderhealth demo

test: $(STAMP) $(NATIVE) allocator superset-env browser ## The whole suite: unit and integration (real broker, Delta, Superset, Chromium).
	$(BIN)/python -m pytest

superset-env: $(STAMP) ## Superset's own pinned environment (.venv-superset), created once.
	$(BIN)/python -c "from orderhealth.superset_cmd import ensure_env; ensure_env()"

superset: $(STAMP) ## Set up and serve Superset over the demo's published tables.
	$(BIN)/orderhealth superset --demo-users

browser: ## Debian's chromium and chromedriver, for the Superset browser test.
	@missing=""; command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || missing="chromium chromium-driver"; \
	$(call apt_or_ask,the Superset browser test)

test-unit: $(STAMP) $(NATIVE)
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) $(NATIVE) allocator
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

bench: $(STAMP) $(NATIVE) allocator ## Benchmark (~30 min): throughput vs the consume+decode ceiling, freshness, memory.
	$(BIN)/orderhealth bench

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache native/target
