# dstate for Python — developer entry points.
# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit soak bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo

lint: $(STAMP)
	$(PY) -m ruff check dstate_core dstate_pykka dstate_thespian tests examples bench
	$(PY) -m ruff format --check dstate_core dstate_pykka dstate_thespian

typecheck: $(STAMP)
	$(PY) -m mypy --strict dstate_core dstate_pykka dstate_thespian

# coverage run (not pytest-cov): the dstate pytest plugin imports dstate_core before
# pytest-cov would start measuring. Test files run on two workers (pytest-xdist), one
# file per worker at a time; coverage follows them into their processes and combines.
unit: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -q -n 2 --dist loadfile
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --fail-under=90

test: lint typecheck unit

soak: $(STAMP)
	DSTATE_SOAK=1 $(PY) -m pytest -q tests/simulation tests/core/persistence/test_crash.py tests/fuzz \
		tests/core/net/test_membership_sim.py tests/core/net/test_membership_scale.py

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
