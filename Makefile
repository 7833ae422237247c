# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench docs clean fuzz fuzz-goroutines fuzz-logs asan

$(STAMP): pyproject.toml $(wildcard src/plegdoctor/_fastscan*.[ch])
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

# The scanner's compiled loop (src/plegdoctor/_fastscan*.c) built with AddressSanitizer and
# UBSan, under its tests, the scanner's and the parse properties (hypothesis); .ci/run runs it.
ASAN_SO := build/asan/_fastscan.so
asan: $(STAMP)
	mkdir -p build/asan
	gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	    -I"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
	    src/plegdoctor/_fastscan.c src/plegdoctor/_fastscan_ticks.c src/plegdoctor/_fastscan_klog.c \
	    src/plegdoctor/_fastscan_intervals.c -o $(ASAN_SO)
	# PYTHONMALLOC=malloc: every buffer the loop reads is a malloc block with red zones
	# (pymalloc's pools would hide an overrun); --capture=sys: a report reaches the terminal
	PLEG_DOCTOR_FASTSCAN_SO=$(ASAN_SO) PLEG_DOCTOR_SCAN_WORKERS=1 ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	    $(PY) -m pytest -q -p no:cacheprovider --capture=sys \
	    tests/test_fastscan.py tests/test_fastscan_klog.py tests/test_fastscan_intervals.py tests/test_logs_scanner.py \
	    tests/test_fuzz_properties.py

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
