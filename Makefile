# The dev loop. Everything runs in a local virtualenv (.venv) that `install`
# creates, so a fresh clone needs only Python 3.9+, pip and a Rust toolchain.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test test-rust test-python test-dask test-bigmem test-fallbacks conformance demo bench bench-chart lint docs wheel wheel-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Builds the Rust extension (release) and installs ferropool in editable mode
# with the test and lint tools. The package's bytecode is compiled, as a wheel
# install does: every spawned worker imports ferropool, and where
# PYTHONDONTWRITEBYTECODE is set nothing else would cache it.
install: $(PY)
	$(PY) -m pip install -q maturin
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q python/ferropool

demo: install
	$(PY) -m ferropool demo

test: install test-rust test-python

test-rust:
	PYO3_PYTHON=$(abspath $(PY)) cargo test --quiet

test-python: install
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest -m dask $(PYTEST_ARGS)

# ferropool.dask's tests and the API tests on Dask clusters (part of
# test-python, in a pytest process of their own: see tests/conftest.py).
test-dask: install
	$(PY) -m pytest -m dask $(PYTEST_ARGS)

# Payloads of 2 and 4 GiB under every start method (up to 16 GiB of memory
# and about 5 minutes; CI runs it after `make test`).
test-bigmem: install
	$(PY) -m pytest tests/test_huge_payloads.py -m bigmem $(PYTEST_ARGS)

# The portable fallbacks of every Linux-only facility (src/platform/,
# docs/porting.md), all forced at once (FERROPOOL_FALLBACKS=all): the fault
# tests, the worker-trust, task-children and large-payload tests, the
# fallbacks' own tests, then CPython's own tests as `make conformance` runs
# them. One facility only: make test-fallbacks FALLBACKS=pidfd
FALLBACKS ?= all
FALLBACK_TESTS := $(wildcard tests/test_faults_*.py) tests/test_task_children.py \
	tests/test_worker_trust.py tests/test_large_payloads.py tests/test_platform_fallbacks.py
test-fallbacks: install
	FERROPOOL_FALLBACKS=$(FALLBACKS) $(PY) -m pytest $(FALLBACK_TESTS) $(PYTEST_ARGS)
	FERROPOOL_FALLBACKS=$(FALLBACKS) $(PY) conformance/run.py $(CONFORMANCE_ARGS)

# CPython's own Pool and ProcessPoolExecutor tests, run against ferropool
# under fork, spawn and forkserver (conformance/run.py says how; a few
# minutes). Another interpreter: make conformance PYTHON=python3.12 VENV=.venv312
conformance: install
	$(PY) conformance/run.py $(CONFORMANCE_ARGS)

# The benchmark suite lives in benches/ (ferropool_bench, not installed: the
# wheel holds ferropool only). Every workload on ferropool, the stdlib and the
# installed peers (the bench extra installs loky, billiard, pebble and mpire),
# through pytest-benchmark, then the ratio table.
# Quicker: make bench PYTEST_ARGS=--bench-quick
bench: install
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m pytest benches -p no:cacheprovider --benchmark-columns=min,median,max,rounds $(PYTEST_ARGS)

# The full comparison as in the README: docs/bench-results.json and the chart
# docs/bench.png (python benches/run.py; --help for its options), every row
# quiet and then beside two CPU-bound processes (about 25 minutes on 2 cores).
bench-chart: install
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) benches/run.py --also-load 2 --json docs/bench-results.json --chart docs/bench.png

lint: install
	$(PY) -m pip install -q -e '.[test,lint]'
	cargo fmt --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests benches conformance examples
	$(PY) -m ruff format --check python benches
	$(PY) -m mypy.stubtest ferropool._native
	$(PY) -m mypy --strict python/ferropool examples
	$(PY) -m mypy benches/ferropool_bench

# The documentation site: the Markdown pages in docs/ (mkdocs.yml), with the API
# reference read from the docstrings in python/ by mkdocstrings (static analysis:
# nothing is imported), built into site/. --strict: a warning (a broken link, a
# reference that does not resolve) fails the build. NO_MKDOCS_2_WARNING quiets
# mkdocs-material's banner about its own future, which is not about these pages.
docs: $(PY)
	$(PY) -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# One abi3 wheel (CPython 3.9+) for manylinux2014 x86_64 (glibc 2.17), linked
# with zig so that this machine's newer glibc does not leak into it, and an
# sdist; both in dist/. `auditwheel show dist/*.whl` names the platform tag.
wheel: $(PY)
	$(PY) -m pip install -q maturin ziglang auditwheel
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m maturin build --release --zig \
		--compatibility manylinux2014 -o dist
	$(PY) -m maturin sdist -o dist
	$(VENV)/bin/auditwheel show dist/*.whl

# The suite against the built wheel, in a fresh virtual environment of every
# CPython 3.9-3.13 present, from outside the source tree (ci/wheel-test.sh).
wheel-test: wheel
	bash ci/wheel-test.sh

clean:
	rm -rf $(VENV) target .pytest_cache .conformance site dist
