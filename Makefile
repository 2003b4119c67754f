# statekit developer tasks (GNU make).
#
# Quick start on a fresh clone: `make demo` and `make test`. Both create .venv with
# python3 when it is missing and install statekit (editable) with every extra; the
# install is redone only when pyproject.toml changes.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := all,dev,bench
STAMP := $(VENV)/.statekit-installed
# bench/ may not exist yet on a fresh clone; lint only what is there.
LINT_PATHS := $(wildcard statekit models tests bench examples)
PYTEST_ARGS ?=

.PHONY: help install demo flask-example django-example test lint typecheck pytest bench diagrams clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(STAMP) ## Create .venv if missing and install statekit with all extras

demo: $(STAMP) ## Run the demo (an order's life on SQLite)
	$(BIN)/statekit demo

flask-example: $(STAMP) ## Serve the Flask order service on SQLite (examples/flask_orders)
	$(BIN)/python -m examples.flask_orders

DJANGO_MANAGE := $(BIN)/python examples/django_orders/manage.py

django-example: $(STAMP) ## Serve the Django order admin on SQLite (examples/django_orders; admin/admin)
	$(DJANGO_MANAGE) migrate --noinput
	$(DJANGO_MANAGE) seed
	$(DJANGO_MANAGE) runserver $(or $(DJANGO_ADDRESS),127.0.0.1:8000)

test: lint typecheck pytest ## Everything CI checks: ruff, ruff format, mypy --strict, pytest

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP) ## mypy (strict, from pyproject.toml) on the package, models, examples and bench
	$(BIN)/mypy statekit models examples bench

# pytest exits 5 when it collected nothing; that must never look like a pass.
pytest: $(STAMP) ## The test suite; pass options with PYTEST_ARGS='-k sweeper -x'
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then \
	  echo "make: pytest collected no tests (exit 5); check PYTEST_ARGS and tests/" >&2; \
	fi; \
	exit $$status

bench: $(STAMP) ## Benchmarks against the peer libraries
	$(BIN)/python -m bench

diagrams: $(STAMP) ## Regenerate diagrams/ from models/
	$(BIN)/python -m statekit.diagrams

clean: ## Remove caches and build output (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov build dist demo-output
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
