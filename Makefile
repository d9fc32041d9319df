# The two commands a newcomer needs: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck unit system-deps bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make demo: embedded broker, SQLite, simulated probes; API on http://127.0.0.1:8080
demo: $(STAMP)
	$(BIN)/netqos demo

## make test: installs what the tests need (Debian services included), then lint, types, the whole suite
test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest

system-deps:
	bash deploy/ci/install-system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py --quick

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
