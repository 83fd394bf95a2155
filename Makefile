# The two commands: `make up` and `make test` (see README.md).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
ARGS   ?=
# The suite runs on this many workers (whole test files each; see tests/conftest.py): most of
# its time is spent waiting on servers and subprocesses, so more workers than cores pays off.
TEST_WORKERS ?= 4

.PHONY: up test lint fmt clean compile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

# Byte-compiled once here, so that every process of the platform does not compile its modules
# again when the environment says not to write bytecode (PYTHONDONTWRITEBYTECODE).
compile:
	@$(BIN)/python -m compileall -q src > /dev/null

up: $(VENV)/.installed compile
	$(BIN)/shipyard up $(ARGS)

test: $(VENV)/.installed-dev compile
	$(BIN)/pytest -n $(TEST_WORKERS) --no-loadscope-reorder $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
