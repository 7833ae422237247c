# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench docs clean fuzz fuzz-goroutines fuzz-logs

$(STAMP): pyproject.toml src/plegdoctor/_fastscan.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# Byte-compile now, as a wheel install would: start-up stays fast even where
	# PYTHONDONTWRITEBYTECODE keeps Python from caching bytecode itself.
	$(PY) -m compileall -q src/plegdoctor
	touch $(STAMP)

# DEMO_ARGS: options of `pleg-doctor demo`, e.g. DEMO_ARGS="-o html -O demo.html" for the picture report
DEMO_ARGS ?=
demo: $(STAMP)
	$(VENV)/bin/pleg-doctor demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench fuzz
	$(VENV)/bin/ruff format --check src tests bench fuzz
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info src/plegdoctor/*.so .pytest_cache .ruff_cache .mypy_cache

# Regenerate the CRI runtime.v1 descriptor (src/plegdoctor/live/cri/_descriptor.py) from api.proto.
proto: $(STAMP)
	$(PY) -m plegdoctor.live.cri.gen

# Coverage-guided fuzzing (atheris) of the goroutine parser and the log scanner: FUZZ_RUNS
# inputs per target, an input taking over FUZZ_TIMEOUT seconds is a hang. Seeds come from
# fuzz/seeds/ (committed); what the fuzzer generates goes to fuzz/corpus/ and crashing
# inputs to fuzz/artifacts/ (both git-ignored). `make -j2 fuzz` runs both at once. See fuzz/README.md.
FUZZ_RUNS ?= 1000000
FUZZ_TIMEOUT ?= 10
FUZZ_MAX_LEN ?= 4096
FUZZ_FLAGS ?=  # more libFuzzer flags, e.g. -max_total_time=3600

fuzz: fuzz-goroutines fuzz-logs

fuzz-goroutines fuzz-logs: fuzz-%: $(STAMP)
	mkdir -p fuzz/corpus/$* fuzz/artifacts
	$(PY) fuzz/fuzz_$*.py fuzz/corpus/$* fuzz/seeds/$* -runs=$(FUZZ_RUNS) -timeout=$(FUZZ_TIMEOUT) \
		-max_len=$(FUZZ_MAX_LEN) -artifact_prefix=fuzz/artifacts/$*- -print_final_stats=1 $(FUZZ_FLAGS)
