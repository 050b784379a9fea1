# The README's two commands are `make run` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_TOOLS := pytest hypothesis ruff mypy gurobipy

.PHONY: setup run test check lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e . $(DEV_TOOLS)
	touch $(STAMP)

# Main job on a shipped example: ACAS Xu network 1_1, property 3 (expected: unsat).
run: setup
	$(BIN)/nnverify check networks/ACASXU_run2a_1_1_batch_2000.onnx properties/prop_3.vnnlib --timeout 116

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check nnverify tests
	$(BIN)/ruff format --check nnverify tests

typecheck: setup
	$(BIN)/mypy nnverify

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
