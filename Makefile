PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed-run

# make run ARGS="--config config/mine.yaml --port 9000"
run: $(VENV)/.installed-run
	$(BIN)/python -m service serve $(ARGS)

# The whole suite with coverage; its floor is `fail_under` in pyproject.toml.
test: lint
	$(BIN)/python -m pytest --cov

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check service tests benchmarks
	$(BIN)/ruff format --check service tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/policy.py
	$(BIN)/python benchmarks/cep_offline.py
	$(BIN)/python benchmarks/storage.py
	$(BIN)/python benchmarks/ratelimit.py
	$(BIN)/python benchmarks/pii.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
