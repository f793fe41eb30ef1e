# Two commands on a fresh machine: `make run` (light install + detection on the sample
# image) and `make test` (full install with training extras + the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/openmtcnn detect openmtcnn/assets/astronaut.png --out out

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_latency.py --out runs/bench.json

clean:
	rm -rf $(VENV) out runs build *.egg-info
