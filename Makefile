# The README's two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: run test lint format bench-quality bench-inference bench-load system-test-deps clean

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## make run: set up .venv and serve DermTriage on http://127.0.0.1:8000 (embedded defaults)
run: $(RUN_STAMP)
	$(BIN)/dermtriage serve

## make test: set up .venv with the test tools, lint, then run the whole suite
test: $(TEST_STAMP) system-test-deps lint
	$(BIN)/pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system-test-deps:
	@bash scripts/system-test-deps.sh

bench-quality: $(RUN_STAMP)
	$(PY) -m benchmarks.quality

bench-inference: $(RUN_STAMP)
	$(PY) -m benchmarks.inference

## make bench-load: 50 clients upload 2,000 real photos to a live server, then nothing may be lost
## (CLIENTS=, UPLOADS=, DATABASE_URL= to change; docs/durability.md has the figures)
CLIENTS ?= 50
UPLOADS ?= 2000
bench-load: $(RUN_STAMP)
	$(PY) -m benchmarks.load --clients $(CLIENTS) --uploads $(UPLOADS) $(if $(DATABASE_URL),--database-url $(DATABASE_URL))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
