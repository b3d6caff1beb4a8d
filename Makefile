# radstream: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup lock sbom compliance-report tools services-up services-down services-status peers-up peers-down demo demo-dicom test lint typecheck security unit integration run bench bench-smoke bench-studies chaos chaos-short schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Dependencies are locked in uv.lock (every package, exact version, sha256 of every file) and
# installed from it with uv, pinned here. uv itself lives in its own small venv under the ignored
# .state/, so `uv sync` can keep .venv exactly equal to the lock. The lock covers CPython 3.11 on
# Linux only ([tool.uv] environments): the platform CI and the image run and the tests prove.
UV_VERSION := 0.13.8
UV_HOME := .state/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# --offline: a lock that matches pyproject.toml is checked without the network, so a failure here
# means the two disagree (someone changed the dependencies without `make lock`).
$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(UV) lock --check --offline --quiet >/dev/null 2>&1 || { \
	  echo "setup: uv.lock does not match pyproject.toml - run 'make lock' and commit uv.lock" >&2; exit 1; }
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet
	touch $(STAMP)

setup: $(STAMP)  ## create .venv from uv.lock: radstream with its dev tools, exact versions

lock: | $(UV)  ## update uv.lock after editing dependencies in pyproject.toml (UPGRADE=1: newest allowed versions)
	$(UV) lock $(if $(UPGRADE),--upgrade)

tools:  ## system tools the tests need (promtool), from Debian's packages if missing
	bash ops/tools.sh

# ---------------------------------------------------------------- compliance evidence (docs/compliance/)
COMPLIANCE_OUT := docs/compliance/generated
KAFKA_BOM := .state/compliance/kafka-bom.json
CYCLONEDX_MAVEN := org.cyclonedx:cyclonedx-maven-plugin:2.9.1

# The Kafka broker's jars with versions, hashes and licences, as Maven resolves ops/kafka/pom.xml.
$(KAFKA_BOM): ops/kafka/pom.xml
	mkdir -p $(dir $@)
	mvn -q -B -Dstyle.color=never -f ops/kafka/pom.xml $(CYCLONEDX_MAVEN):makeBom \
	  -DoutputFormat=json -DoutputName=kafka-bom -DincludeBomSerialNumber=false \
	  -DoutputDirectory=$(abspath $(dir $@))

sbom: setup $(KAFKA_BOM)  ## CycloneDX SBOM + SOUP list into docs/compliance/generated; fails on copyleft in the runtime
	$(BIN)/python -m compliance sbom --out $(COMPLIANCE_OUT)

compliance-report: setup $(KAFKA_BOM)  ## one report: matrix of the last make test, SOUP, model cards, audit verification
	$(BIN)/radstream compliance report --out $(COMPLIANCE_OUT)/report.md

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

demo-dicom: setup services-up peers-up  ## the DICOM round trip: Orthanc -> radstream -> results -> SR back in Orthanc
	source $${RADSTREAM_STATE_DIR:-.state}/orthanc/peer.env && \
	  $(BIN)/radstream dicom demo --orthanc "http://127.0.0.1:$$ORTHANC_HTTP_PORT"

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
	$(BIN)/bandit -q -c pyproject.toml -r schemas streams sinks gateway observability cli compliance app.py

# The whole suite once: the plugin records each outcome and writes the traceability matrix, and
# Modules every line and branch of which a test must reach, each on its own (the whole suite's
# bar is 85 %): input validation, logging with PHI masking, and the error catalogues — the code
# that decides what a sender is told and what an operator may read. The second coverage report
# fails the run and names the lines when one of them drops below 100 %.
FULL_COVERAGE := streams/validation/*,observability/logging.py,observability/phi.py,observability/phi_attributes.py,schemas/modality.py,schemas/body_part.py,schemas/errors.py,gateway/errors.py,cli/errors.py
# --compliance-gate fails the run when an implemented requirement has no passing test.
test: setup tools services-up peers-up lint typecheck security sbom  ## the whole suite: ruff, mypy, bandit, licences, pytest with coverage and the traceability gate
	RADSTREAM_REQUIRE_SERVICES=1 $(BIN)/pytest --cov --cov-branch --cov-report=term --cov-fail-under=85 -p no:cacheprovider \
	  --compliance-matrix $(COMPLIANCE_OUT) --compliance-gate
	$(BIN)/coverage report --include='$(FULL_COVERAGE)' --fail-under=100 --skip-covered

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
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.bench_studies

# The chaos suite starts its own private broker and PostgreSQL (free ports, state under /tmp),
# so it needs the Kafka jars and PostgreSQL binaries, not the shared services. `make test` runs
# its short profile; these record their numbers in bench/results/chaos-<profile>.json.
chaos: setup  ## chaos suite, full profile: kills, broker and database outages under load; records bench/results/chaos-full.json
	CHAOS_PROFILE=full CHAOS_RECORD=1 $(BIN)/pytest tests/reliability/test_chaos.py -q -s -p no:cacheprovider

chaos-short: setup  ## chaos suite, the short profile CI runs (a few minutes); records bench/results/chaos-short.json
	CHAOS_PROFILE=short CHAOS_RECORD=1 $(BIN)/pytest tests/reliability/test_chaos.py -q -s -p no:cacheprovider

bench-smoke: setup services-up  ## 12-event end-to-end benchmark check
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.run_pipeline --smoke

bench-studies: setup services-up  ## stat latency under a routine backlog, completion-to-study-result
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.bench_studies

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
