# kubetrail developer entry points. `make demo` and `make test` work on a fresh Debian + Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-distributed test check lint bench help lock image

$(BIN)/kubetrail: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/kubetrail

venv: $(BIN)/kubetrail

demo: venv  ## run the bundled attack scenario on the embedded default (SQLite, no broker)
	$(BIN)/kubetrail demo

demo-distributed: venv  ## the same scenario through nats-server, a node agent (disk WAL) and a collector
	$(BIN)/kubetrail demo --distributed --data ./kubetrail-data-distributed

test: venv  ## run the whole test suite (lint, import layers, pytest)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

LOCK := $(BIN)/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links

lock: venv  ## re-pin requirements.lock (runtime deps, with hashes) and requirements-build.lock after a pyproject change
	$(LOCK) --strip-extras --output-file=requirements.lock pyproject.toml
	$(LOCK) --strip-extras --allow-unsafe --output-file=requirements-build.lock deploy/image/build-requirements.in

image:  ## build the container image (needs docker or podman; tag = the version in pyproject.toml)
	docker build -t kubetrail:$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) .

bench: venv
	$(BIN)/python bench/ingest.py

help:
	@grep -E '^[a-z]+:.*##' Makefile | sed 's/:.*##/ —/'
