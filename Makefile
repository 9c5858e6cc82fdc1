# Titan developer commands. `make demo` and `make test` work on a fresh machine with python3.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,dagster,airflow,mcp,dashboard,postgres

.PHONY: demo test lint proto bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

## Start a throwaway cluster, run the example pipeline end to end, show what happened, stop.
demo: $(STAMP)
	$(PY) -m titan_runtime demo

## Lint, layering contracts, then the whole test suite (unit and integration).
test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

## Regenerate the gRPC stubs from titan_runtime/proto/titan.proto.
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. titan_runtime/proto/titan.proto

## Run every benchmark; each prints a table with a same-run baseline.
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
