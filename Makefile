# Two entry points for a fresh Linux machine with Python 3.11+: `make demo` and `make test`.
# Both build .venv first; neither needs a system-wide Redis (the dev extra brings valkey-server).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint check-unit soak reliability demo bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "symbold needs Python 3.11 or newer" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,celery]'
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check daemon tests benchmarks scripts
	$(BIN)/ruff format --check daemon tests benchmarks scripts
	$(BIN)/mypy --strict daemon
	$(BIN)/lint-imports
	$(BIN)/python scripts/unasync.py --check

# The randomized soak (bounded; 60 s by default, SYMBOLD_SOAK_SECONDS=900 for a long run).
soak: $(STAMP)
	SYMBOLD_SOAK_SECONDS=$${SYMBOLD_SOAK_SECONDS:-60} $(BIN)/python -m pytest -p no:cacheprovider -m soak tests/soak

# Re-run the fault suite and the soak and regenerate docs/reliability.md from their results.
reliability: $(STAMP)
	$(BIN)/python scripts/reliability_table.py

check-unit: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" sh scripts/check-unit.sh

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" sh scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
