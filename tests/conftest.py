"""Shared fixtures for the Pool tests.

tests/ goes on sys.path so that `_helpers` and `_support` import here; spawn
and forkserver workers get the parent's sys.path through the stdlib's
preparation data, and scripts run in a subprocess get it through PYTHONPATH
(see `_support.child_env`). benches/ goes there too, for the benchmark
suite's own tests (test_bench_runner.py imports ferropool_bench); the
interpreters the suite starts find it on their own
(`ferropool_bench.adapters.child_env`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
# Last: nothing else in benches/ (its conftest, run.py) may shadow a module.
BENCHES = TESTS.parent / "benches"
if str(BENCHES) not in sys.path:
    sys.path.append(str(BENCHES))

import _fault_helpers as fh  # noqa: E402
import ferropool  # noqa: E402
from _support import METHODS  # noqa: E402


@pytest.fixture(params=METHODS)
def method(request) -> str:
    return request.param


@pytest.fixture
def make_pool(method):
    """A factory of pools of the parametrised start method; every pool it
    made is terminated at teardown."""
    pools = []

    def make(processes=2, *args, **kwargs):
        pool = ferropool.get_context(method).Pool(processes, *args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()


@pytest.fixture
def pool(make_pool):
    """A running 2-worker pool of the parametrised start method."""
    return make_pool(2)


@pytest.fixture
def fpool():
    """A running 2-worker pool with the default start method (fork on Linux):
    for tests whose subject does not depend on the start method."""
    p = ferropool.Pool(2)
    yield p
    p.terminate()


# ----- fault-injection tests (test_faults_*.py) ---------------------------


@pytest.fixture
def gpool():
    """A 2-worker pool (default start method), terminated with a hang guard
    (conftest's `fpool` would hang the session if terminate() hung)."""
    pool = ferropool.Pool(2)
    yield pool
    fh.stop_guarded(pool)


@pytest.fixture
def tracker():
    """Remembers every process started below the test; the test calls
    `tracker.assert_clean()` once its pools are stopped."""
    return fh.ProcessTracker()


# ----- the same tests on a Dask cluster (ferropool.dask) --------------------

# Where a test taking `xpool` or `xexecutor` runs: ferropool's own engine,
# a cluster started with Dask's command-line programs, and a LocalCluster.
BACKENDS = ["local", "dask-cli", "dask-local"]


def pytest_collection_modifyitems(config, items):
    """Marks `dask` every test that uses a Dask cluster: `make test` runs them
    in a pytest process of their own, because importing `distributed`
    changes how every exception pickles in that process (it installs tblib's
    reducers in copyreg, which lose SystemExit's code), and forked workers of
    the other tests would inherit that."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_dask = callspec is not None and str(callspec.params.get("backend", "")).startswith(
            "dask"
        )
        if on_dask or item.path.name == "test_dask.py":
            item.add_marker(pytest.mark.dask)


@pytest.fixture(scope="session")
def dask_clusters():
    """The session's Dask clusters, started on first use (see _dask_clusters)."""
    started = {}

    def get(kind):
        if kind not in started:
            pytest.importorskip("distributed", reason="ferropool[dask] is not installed")
            import _dask_clusters as dc

            started[kind] = dc.CliCluster() if kind == "dask-cli" else dc.InProcessCluster()
        return started[kind]

    yield get
    for cluster in started.values():
        cluster.close()


@pytest.fixture(params=BACKENDS)
def backend(request, dask_clusters):
    """A backend name, and its cluster's client ("local": None)."""
    if request.param == "local":
        return request.param, None
    return request.param, dask_clusters(request.param).client


@pytest.fixture
def xpool(backend):
    """A running pool of 2 workers (locally) on each backend, terminated at
    teardown."""
    kind, client = backend
    if client is None:
        pool = ferropool.Pool(2)
    else:
        from ferropool.dask import Pool

        pool = Pool(client=client)
    yield pool
    pool.terminate()


@pytest.fixture
def xexecutor(backend):
    """A ProcessPoolExecutor of 2 workers (locally) on each backend."""
    kind, client = backend
    if client is None:
        ex = ferropool.ProcessPoolExecutor(2)
    else:
        from ferropool.dask import ProcessPoolExecutor

        ex = ProcessPoolExecutor(client=client)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)
