# asess developer commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
# The development venv: the package with every extra, the test, docs and benchmark tools.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make run` gets a venv of its own with only what the demo needs, so it is ready in seconds.
RUN_VENV ?= .venv-run
RUN_STAMP := $(RUN_VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check
TEST_WORKERS ?= auto

.PHONY: run test lint format docs fuzz stress bench bench-quick starlette-suite clean

$(STAMP): pyproject.toml requirements/dev.txt requirements/bench.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) -e '.[redis,emmett,aiohttp,granian,demo]' \
		-r requirements/dev.txt -r requirements/bench.txt
	touch $(STAMP)

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install $(PIP_QUIET) -e '.[demo]'
	touch $(RUN_STAMP)

run: $(RUN_STAMP)  ## serve the counter demo (Emmett's example) at http://127.0.0.1:8000/
	$(RUN_VENV)/bin/python -m asess demo --backend files --port 8000

lint: $(STAMP)
	$(PY) -m ruff check asess tests bench
	$(PY) -m ruff format --check asess tests bench
	$(PY) -m mypy --strict asess

format: $(STAMP)
	$(PY) -m ruff format asess tests bench
	$(PY) -m ruff check --fix asess tests bench

# Bytecode caches on even where the environment turns them off (PYTHONDONTWRITEBYTECODE):
# without them every uvicorn worker and CLI run the suite starts compiles asess again,
# and pytest rewrites every test module's asserts on every run.
# The suite runs in TEST_WORKERS pytest-xdist processes (one per CPU by default; 0 runs it
# in this process), each test file in one worker so a file's servers start once.
test: $(STAMP) lint
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

docs: $(STAMP)  ## build the documentation site into site/, failing on any warning
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

fuzz: $(STAMP)
	ASESS_FUZZ_EXAMPLES=100000 $(PY) -m pytest tests/test_fuzz.py -s -q -p no:cacheprovider --timeout=0

stress: $(STAMP)
	ASESS_STRESS=full $(PY) -m pytest -m slow tests/test_stress.py -s

starlette-suite: $(STAMP)  ## Starlette's own SessionMiddleware tests against asess.starlette
	PY=$(PY) scripts/starlette_suite.sh

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) $(RUN_VENV) build dist site .mypy_cache .pytest_cache .ruff_cache sessions
