# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint typecheck unit slow setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/autoprune demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy autoprune

# The suite (6.5 minutes on 2 idle cores, 808 tests): every test but the ones marked slow.
unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow" --durations=15

# The slow tests (18 minutes, 105 tests): benchmark quick modes, SIGKILL/resume faults, multi-worker searches.
slow: $(STAMP)
	$(BIN)/pytest -q -m slow --durations=15

test: lint typecheck unit

test-all: test slow

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
