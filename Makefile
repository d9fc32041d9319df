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

## make warm: compile every numba kernel into its cache (__pycache__) once, so neither the first
## start of the service nor the first test that starts one spends tens of seconds compiling
warm: $(STAMP)
	$(BIN)/python -c "from collector.core import warm_up; from collector.snmp.ber import warm_up as ber; from collector.mqtt.scan import warm_up as scan; warm_up(); ber(); scan()"

## make test: installs what the tests need (Debian services included), then lint, types, the whole suite
test: $(STAMP) system-deps lint typecheck warm
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

## make probe-dist: the slim field-probe agent (docs/probe-agent.md, "Packaging"):
## dist/netqos_probe-*.whl (pure Python, any platform) and dist/netqos-probe.pyz, one file holding
## the agent and its dependencies for one platform and Python version: by default this machine's;
## for a Raspberry Pi e.g. PROBE_PIP_TARGET='--platform manylinux2014_aarch64 --python-version 3.11'.
PROBE_PIP_TARGET ?=
probe-dist: $(STAMP)
	$(BIN)/python probes/agent/packaging/build.py --out dist --pip-target "$(PROBE_PIP_TARGET)"

clean:
	rm -rf $(VENV) var dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
