# kubetrail developer entry points. `make demo` and `make test` work on a fresh Debian + Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint bench help

$(BIN)/kubetrail: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/kubetrail

venv: $(BIN)/kubetrail

demo: venv  ## run the bundled attack scenario on the embedded default (SQLite, no broker)
	$(BIN)/kubetrail demo

test: venv  ## run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/ingest.py

help:
	@grep -E '^[a-z]+:.*##' Makefile | sed 's/:.*##/ —/'
