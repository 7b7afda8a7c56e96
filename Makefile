# Two commands for a fresh machine: `make run` (the local stack, foreground) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint bench reliability venv objectstore browser down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The S3 server of the local stack (Ceph RGW from Debian packages), cached outside the repo.
objectstore: $(STAMP)
	$(BIN)/python -c 'from ingest.local.objectstore import ensure_installed; print(ensure_installed())'

# A real browser for the web console's end-to-end tests: Debian's chromium and its driver, and Node.js,
# which runs the console's bundle.js against the command line's bytes without a page around it.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v node >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver $$(command -v node >/dev/null || echo nodejs); }

run: objectstore
	$(BIN)/ingest-local up

down:
	$(BIN)/ingest-local down

# ruff and mypy, configured in pyproject.toml; `make test` runs it before the suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: objectstore browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The pure logic only: no local stack, no server processes (the `processes` marker, tests/conftest.py).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not stack and not processes' $(PYTEST_ARGS)

bench: objectstore
	$(BIN)/python -m benchmarks

reliability: objectstore
	$(BIN)/python -m benchmarks.reliability

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
