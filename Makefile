# asess developer commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format fuzz stress bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,redis,granian,bench]'
	touch $(STAMP)

run: $(STAMP)  ## serve the spec's counter demo at http://127.0.0.1:8000/counter
	$(PY) -m asess demo --backend files --port 8000

lint: $(STAMP)
	$(PY) -m ruff check asess tests bench
	$(PY) -m ruff format --check asess tests bench
	$(PY) -m mypy --strict asess

format: $(STAMP)
	$(PY) -m ruff format asess tests bench
	$(PY) -m ruff check --fix asess tests bench

test: $(STAMP) lint
	$(PY) -m pytest

fuzz: $(STAMP)
	ASESS_FUZZ_EXAMPLES=100000 $(PY) -m pytest tests/test_fuzz.py -s -q -p no:cacheprovider --timeout=0

stress: $(STAMP)
	ASESS_STRESS=full $(PY) -m pytest -m slow tests/test_stress.py -s

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache sessions
