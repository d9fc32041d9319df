# The two commands a newcomer needs: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck unit system-deps bench clean warm probe-dist

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make demo: embedded broker, SQLite, simulated probes; API on http://127.0.0.1:8080
demo: $(STAMP) warm
	$(BIN)/netqos demo

## make warm: compile every registered numba kernel (collector/core/kernels.py) into its cache
## (__pycache__) once, so neither the first start of the service nor the first test that starts
## one spends tens of seconds compiling
warm: $(STAMP)
	$(BIN)/python -m collector.core.kernels

## make test: installs what the tests need (Debian services included), then lint, types, the whole suite.
## The tests marked `idle` (minutes of waiting, almost no CPU: the ten-minute probe outage) run in a
## second pytest process beside the main one (tests/run_suite.py); the target fails if either fails,
## the second one's output and both summary lines follow the main suite's, JUnit XML in var/test-results.
## PYTEST_ARGS go to both processes (e.g. PYTEST_ARGS=-x).
PYTEST_ARGS ?=
test: $(STAMP) system-deps lint typecheck warm
	$(BIN)/python -m tests.run_suite --junit-dir var/test-results $(PYTEST_ARGS)

system-deps:
	bash deploy/ci/install-system-deps.sh

## make lint: ruff, and the import contracts between the layers ([tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## make unit: the unit tests that need no service; a test that starts one anyway fails (it
## belongs in tests/integration or needs the `services` marker)
unit: $(STAMP)
	NETQOS_TEST_NO_SERVICES=1 $(BIN)/pytest tests/unit -m "not services"

bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py --quick

## make probe-dist: the slim field-probe agent (docs/probe-agent.md, "Packaging"):
## dist/netqos_probe-*.whl (pure Python, any platform) and dist/netqos-probe.pyz, one file holding
## the agent and its dependencies for one platform and Python version: by default this machine's;
## for a Raspberry Pi e.g. PROBE_PIP_TARGET='--platform manylinux2014_aarch64 --python-version 3.11'.
PROBE_PIP_TARGET ?=
probe-dist: $(STAMP)
	$(BIN)/python probes/agent/packaging/build.py --out dist --pip-target "$(PROBE_PIP_TARGET)"

clean:
	rm -rf $(VENV) var dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
