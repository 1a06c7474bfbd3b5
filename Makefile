# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (Python 3.11+) and installs what it needs; later runs reuse it. `make test`
# also creates .venv-ray for the Ray engine's tests (tests/ray_engine): fedquery[ray-test], whose
# Daft needs a pyarrow older than the base install's.
PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed-dev
RAY_VENV  := .venv-ray
RAY_BIN   := $(RAY_VENV)/bin
RAY_STAMP := $(RAY_VENV)/.installed-dev-ray

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(RAY_BIN)/python:
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_BIN)/python -m pip install --quiet --upgrade pip

$(RAY_STAMP): pyproject.toml | $(RAY_BIN)/python
	$(RAY_BIN)/python -m pip install --quiet -e '.[ray-test]'
	touch $(RAY_STAMP)

demo: $(STAMP)
	$(BIN)/fedquery demo

test: $(STAMP) $(RAY_STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/ray_engine
	$(RAY_BIN)/python -m pytest -q tests/ray_engine

lint: $(STAMP)
	$(BIN)/ruff check fedquery tests bench

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) $(RAY_VENV) .pytest_cache
