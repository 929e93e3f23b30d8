# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv with the CPU build of PyTorch (pinned here only; the package itself accepts torch>=2.2).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.initscope-installed

.PHONY: demo test test-all zoo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[demo,test,bench]" "$(TORCH_PIN)"
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
	$(ZOO_VENV)/bin/pip install -q --disable-pip-version-check -e ".[zoo]"
	$(ZOO_VENV)/bin/python -m pytest -q -m zoo tests/zoo
	$(ZOO_VENV)/bin/python scripts/zoo_table.py

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/pip install -q ruff && $(BIN)/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) demo-output
