# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv from scratch.
PYTHON ?= python3
# pytest-xdist processes for `make test` (WORKERS=auto: one per core; WORKERS=0: no xdist).
# 4 on this 2-core machine: the end-to-end tests spend much of their time waiting on the CLI
# processes they start, so two more workers fill those waits (measured: 657 s with 2, 594 s
# with 4)
WORKERS ?= 4
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-quick lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)                 ## build the demo company's project in ./tarmac-demo and tell its story
	$(BIN)/tarmac demo tarmac-demo $(if $(SIZE),--size $(SIZE),)

test: $(STAMP)                 ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)            ## skip the slow end-to-end tests
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

bench: $(STAMP)                ## benchmarks at full size (10M rows); figures go in the README
	$(BIN)/python benchmarks/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

lint: $(STAMP)                 ## ruff on everything, mypy on src/
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/tarmac

clean:
	rm -rf $(VENV) tarmac-demo bench-data .pytest_cache
