# The README's two commands are `make run` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SWI-Prolog >= 9.1.12 + janus-swi for the clpq backend: scripts/install_swipl.sh uses a new enough system
# swipl, else its cached build (~/.cache/nnverify), else builds 9.2.9 from Debian trixie's source (1-5 min, once).
PROLOG_STAMP := $(VENV)/.janus
DEV_TOOLS := pytest hypothesis ruff mypy gurobipy
# Every optional part (pyproject.toml), so that the tests cover all of them.
EXTRAS := bench,images,binary,gurobi

.PHONY: setup run test test-all check lint typecheck clean bnn-models

# Byte-compiled once here: with PYTHONDONTWRITEBYTECODE set (as in some sandboxes and CI images) every check
# would otherwise recompile ~75 modules at start-up (0.72 s -> 0.40 s on test_nano, measured 2026-12-06).
setup: $(STAMP) $(PROLOG_STAMP)
	$(BIN)/python -m compileall -q nnverify > /dev/null

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]' $(DEV_TOOLS)
	touch $(STAMP)

$(PROLOG_STAMP): $(STAMP) scripts/install_swipl.sh
	swipl_bin=$$(scripts/install_swipl.sh) && PATH="$$swipl_bin:$$PATH" $(BIN)/pip install --quiet janus-swi
	$(BIN)/python -c "import janus_swi as j; j.query_once('use_module(library(clpq))')"
	touch $(PROLOG_STAMP)

# Main job on a shipped example: ACAS Xu network 1_1, property 3 (expected: unsat).
run: setup
	$(BIN)/nnverify check networks/ACASXU_run2a_1_1_batch_2000.onnx properties/prop_3.vnnlib --timeout 116

# NNVERIFY_REQUIRE_CLPQ: the clpq tests fail instead of skipping when janus-swi is missing.
test: setup
	NNVERIFY_REQUIRE_CLPQ=1 $(BIN)/pytest -q

# Everything, including the tests marked `slow` (full benchmark sets, long solver runs) that `make test` leaves out.
test-all: setup
	NNVERIFY_REQUIRE_CLPQ=1 $(BIN)/pytest -q -m ''

# The porous-media BNN surrogates, from scratch: datasets (cached in bench/data/), training, ONNX + metrics JSON.
bnn-models: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m nnverify.bnn.train --grains 2 --out networks/porous_bnn_d2.onnx
	OMP_NUM_THREADS=1 $(BIN)/python -m nnverify.bnn.train --grains 3 --out networks/porous_bnn_d3.onnx

lint: setup
	$(BIN)/ruff check nnverify tests
	$(BIN)/ruff format --check nnverify tests

typecheck: setup
	$(BIN)/mypy nnverify

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
