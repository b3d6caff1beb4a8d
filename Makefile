# radstream: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup tools services-up services-down services-status peers-up peers-down demo test lint typecheck security unit integration run bench bench-smoke schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install radstream with its dev tools

tools:  ## system tools the tests need (promtool), from Debian's packages if missing
	bash ops/tools.sh

services-up:  ## start Kafka and PostgreSQL (idempotent)
	bash ops/services.sh up

services-down:  ## stop the Kafka and PostgreSQL this project started
	bash ops/services.sh down

services-status:
	bash ops/services.sh status

peers-up:  ## start the DICOM peer the tests use: Orthanc + dcmtk (Debian packages), own free ports
	bash ops/orthanc.sh up

peers-down:  ## stop the Orthanc this project started
	bash ops/orthanc.sh down

demo: setup services-up  ## run the pipeline end to end on the bundled sample images
	$(BIN)/radstream demo

run: setup services-up  ## services + all workers in the foreground
	$(BIN)/radstream db upgrade
	$(BIN)/radstream topics ensure
	$(BIN)/radstream worker

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

security: setup
	$(BIN)/bandit -q -c pyproject.toml -r schemas streams sinks gateway observability cli app.py

test: setup tools services-up peers-up lint typecheck security  ## the whole suite: ruff, mypy, bandit, pytest with branch coverage
	RADSTREAM_REQUIRE_SERVICES=1 $(BIN)/pytest --cov --cov-branch --cov-report=term --cov-fail-under=85 -p no:cacheprovider

unit: setup  ## unit tests only (no services)
	$(BIN)/pytest tests/unit -q

integration: setup services-up peers-up
	$(BIN)/pytest tests/integration tests/reliability -q

schemas: setup  ## regenerate the committed JSON Schema, AsyncAPI and OpenAPI documents
	$(BIN)/radstream schemas export

# One OpenBLAS thread, as `radstream` runs (cli/__init__.py): the work-limit loop
# in the driver process then does the same work the workers do.
bench: setup services-up  ## end-to-end benchmark (not part of the test suite)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.run_pipeline

bench-smoke: setup services-up  ## 12-event end-to-end benchmark check
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.run_pipeline --smoke

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
