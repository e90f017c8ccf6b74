# `make run` and `make test` work on a fresh machine with only Python 3.11+:
# they create .venv on first use and install gradsuite with everything it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned here (the CPU build); pyproject.toml keeps it loose for users elsewhere.
TORCH  ?= torch==2.13.0
# One thread per pool by default: on 2 cores torch's and Numba's pools fight each other.
export OMP_NUM_THREADS ?= 1
export NUMBA_NUM_THREADS ?= 1

.PHONY: setup run test bench asv lint clean mutation test-slow

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/gradsuite run $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/pytest --benchmark-only $(ARGS)

# asv over the last few commits (COMMITS=range overrides), then the HTML in .asv/html.
# forkserver: 2.5-3.5x faster than spawn; compare peakmem_ only within one launch method.
COMMITS ?= HEAD~3..HEAD
asv: $(STAMP)
	$(BIN)/asv machine --yes
	$(BIN)/asv run --launch-method forkserver --show-stderr $(COMMITS)
	$(BIN)/asv publish
	$(BIN)/python -m suite.report.asv_offline .asv/html   # jQuery, flot, bootstrap from npm: works offline

# Mutation testing (mutmut), one module at a time with its own test files, at most BUDGET
# seconds per module on JOBS processes; scores in mutation/scores.json. MODULES= picks some;
# RESUME=1 goes on from the previous run's verdicts (more budget, call after call).
# TESTS="a.py b.py" runs one module's mutants against other test files (a copy of its own);
# MUTANTS='suite.losses.x__bce__mutmut_*' picks mutants by name.
BUDGET ?= 900
JOBS   ?= 2
mutation: $(STAMP)
	$(BIN)/python tests/mutation.py $(MODULES) --budget $(BUDGET) --jobs $(JOBS) $(if $(RESUME),--resume) \
	  $(if $(TESTS),--tests $(TESTS)) $(if $(MUTANTS),--mutants '$(MUTANTS)')

# The tests that a plain `pytest` deselects (marker slow), alone.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check suite tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV)
