# Two commands for a fresh machine: `make run` (the local stack, foreground) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint bench reliability venv objectstore down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The S3 server of the local stack (Ceph RGW from Debian packages), cached outside the repo.
objectstore: $(STAMP)
	$(BIN)/python -c 'from ingest.local.objectstore import ensure_installed; print(ensure_installed())'

run: objectstore
	$(BIN)/ingest-local up

down:
	$(BIN)/ingest-local down

# ruff and mypy, configured in pyproject.toml; `make test` runs it before the suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: objectstore lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not stack' $(PYTEST_ARGS)

bench: objectstore
	$(BIN)/python -m benchmarks

reliability: objectstore
	$(BIN)/python -m benchmarks.reliability

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
