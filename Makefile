# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# Byte-compile now, as a wheel install would: start-up stays fast even where
	# PYTHONDONTWRITEBYTECODE keeps Python from caching bytecode itself.
	$(PY) -m compileall -q src/plegdoctor
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pleg-doctor demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .mypy_cache

# Regenerate the CRI runtime.v1 descriptor (src/plegdoctor/live/cri/_descriptor.py) from api.proto.
proto: $(STAMP)
	$(PY) -m plegdoctor.live.cri.gen
