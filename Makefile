# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv with the CPU build of PyTorch. The package requires torch>=2.13, the oldest
# release CI tests (see CHANGELOG.md); the pin below is the one CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.initscope-installed
# Everything the linters and the formatter check (src/ alone is type-checked: see pyproject.toml).
LINTED := src tests benchmarks examples scripts

.PHONY: demo test test-all zoo bench lint format-check typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[demo,test,bench,dev]" "$(TORCH_PIN)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/initscope demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

# The real-model zoo needs the registry build of torch (torchvision and timm do not import next to
# the CPU wheel), so it gets its own environment.
ZOO_VENV := .venv-zoo
zoo:
	test -x $(ZOO_VENV)/bin/python || $(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_VENV)/bin/pip install -q --disable-pip-version-check -e ".[zoo,test]" "torch==2.13.0,!=2.13.0+cpu"
	$(ZOO_VENV)/bin/python -m pytest -q -m zoo tests/zoo
	$(ZOO_VENV)/bin/python scripts/zoo_table.py

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

# ruff and mypy are pinned in the `dev` extra of pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)

format-check: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy

# What CI runs after the tests (.ci/run); the same hooks run before each commit with pre-commit.
check: lint format-check typecheck

clean:
	rm -rf $(VENV) demo-output
