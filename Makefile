# Two entry points (see README): `make run` and `make test`. Both set everything up first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORLD ?= worlds/defs/arena.toml
TICKS ?= 200
PYTEST_COV := --cov=ecs --cov=systems --cov=worlds --cov-report=

.PHONY: setup run test bench bench-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench,ray]"
	touch $(STAMP)

# The main job: run a shipped world and print its summary.
run: setup
	$(BIN)/worlds run $(WORLD) --ticks $(TICKS)

# The suite with the JIT on (writes pytest_results.json), then the kernel tests again with the
# JIT off so coverage sees inside the numba kernels; fails under 90 % of lines.
test: setup
	rm -f .coverage
	$(BIN)/python -m pytest --json-report --json-report-file=pytest_results.json $(PYTEST_COV)
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -m kernel -q -W "ignore::RuntimeWarning" \
		$(PYTEST_COV) --cov-append
	$(BIN)/python -m coverage report --fail-under=90
	$(BIN)/python -m coverage xml -q -o coverage.xml

bench: setup
	$(BIN)/python bench/run.py

bench-quick: setup
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .coverage coverage.xml pytest_results.json .pytest_cache .benchmarks
