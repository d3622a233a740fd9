"""ferropool.dask: what only a cluster has (the same API's tests run on the
clusters too: see `xpool` and `xexecutor` in conftest). A cluster started
by the pool itself, one reached by address, workers killed mid-map, lazy
input without bound, initializers, terminate and Ctrl-C cancelling the
work on the cluster."""

from __future__ import annotations

import _thread
import importlib.util
import itertools
import logging
import os
import signal
import threading
import time
from concurrent.futures import CancelledError

import _helpers as h
import psutil
import pytest
from _exec_helpers import greeting, mark_then_sleep, set_greeting
from ferropool import WorkerLostError

if importlib.util.find_spec("distributed") is None:
    pytest.skip("ferropool[dask] is not installed", allow_module_level=True)


# Imported when a test runs, never at collection: importing distributed
# changes how exceptions pickle in this process (see conftest).
def Pool(*args, **kwargs):
    from ferropool.dask import Pool

    return Pool(*args, **kwargs)


def ProcessPoolExecutor(*args, **kwargs):
    from ferropool.dask import ProcessPoolExecutor

    return ProcessPoolExecutor(*args, **kwargs)

pytestmark = pytest.mark.timeout(120)


def scheduler_tasks(client, prefix):
    """How many tasks whose key starts with `prefix` the scheduler holds."""

    def count(dask_scheduler, prefix=prefix):
        return sum(1 for key in dask_scheduler.tasks if str(key).startswith(prefix))

    return client.run_on_scheduler(count)


def test_without_a_client_a_local_cluster_is_started_and_closed(caplog):
    with caplog.at_level(logging.INFO, logger="ferropool.dask"):
        with Pool(2) as pool:
            client = pool.client
            assert len(client.nthreads()) == 2
            assert pool.map(h.square, range(10)) == [i * i for i in range(10)]
            worker_pids = set(client.run(os.getpid).values())
            # Not made the program's default client (dask.compute stays local).
            from distributed import default_client

            with pytest.raises(ValueError):
                default_client()
    assert "dashboard" in caplog.text
    assert client.status == "closed"
    for pid in worker_pids:  # the worker processes went with the cluster
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker {pid} outlived its LocalCluster")


def test_an_address_connects_a_client_that_is_closed_at_the_end(dask_clusters):
    cluster = dask_clusters("dask-cli")
    with Pool(address=cluster.address) as pool:
        client = pool.client
        assert client is not cluster.client
        assert pool.apply(h.add, (2, 3)) == 5
    assert client.status == "closed"
    assert cluster.client.status == "running"  # the cluster itself stays
    with ProcessPoolExecutor(address=cluster.address) as ex:
        assert list(ex.map(h.square, range(4))) == [0, 1, 4, 9]


def test_a_client_and_an_address_together_are_refused(dask_clusters):
    cluster = dask_clusters("dask-local")
    with pytest.raises(ValueError, match="not both"):
        Pool(client=cluster.client, address=cluster.address)


@pytest.fixture
def fragile_cluster():
    """A LocalCluster of its own (its workers get killed), where a task that
    killed its worker is retried once (Dask's allowed-failures)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_a_task_that_kills_every_worker_it_runs_on_fails_alone(fragile_cluster):
    with Pool(client=fragile_cluster) as pool:
        out: list = [None] * 6
        # One chunk in flight at a time: Dask also counts a task queued on a
        # worker that dies against it, so no other chunk may share the
        # killer's workers for this to test only the killer's fate.
        results = pool.imap(h.kill_own_process_on, range(6), buffersize=1)
        for i in range(6):
            try:
                out[i] = next(results)
            except WorkerLostError as e:
                out[i] = e
        lost = out[3]
        assert isinstance(lost, WorkerLostError), out
        assert "tcp://127.0.0.1:" in str(lost) and "KilledWorker" in str(lost)
        assert [out[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 4, 16, 25]
        # The pool goes on, on the workers the nannies started again.
        assert pool.map(h.square, range(8)) == [i * i for i in range(8)]


def test_a_worker_killed_from_outside_mid_map_costs_at_most_its_chunk(fragile_cluster):
    with Pool(client=fragile_cluster) as pool:
        pids = fragile_cluster.run(os.getpid)
        victim = next(iter(pids.values()))
        async_results = [pool.apply_async(h.sleep_then, (0.2, i)) for i in range(20)]
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        outcomes = []
        for r in async_results:
            try:
                outcomes.append(r.get(timeout=60))
            except WorkerLostError as e:
                outcomes.append(e)
        values = [o for o in outcomes if not isinstance(o, WorkerLostError)]
        lost = [o for o in outcomes if isinstance(o, WorkerLostError)]
        # Dask retries the tasks of the dead worker elsewhere: all complete,
        # or (retries spent) only tasks that were on it fail.
        assert len(lost) <= 2, lost
        assert all(outcomes[i] == i for i in range(20) if not isinstance(outcomes[i], Exception))
        assert len(values) + len(lost) == 20


def test_imap_over_an_endless_generator_keeps_a_bounded_window(xpool_dask):
    pool, client = xpool_dask
    window = 8
    results = pool.imap(h.square, itertools.count(), chunksize=5, buffersize=window)
    for i in range(2000):
        assert next(results) == i * i
        if i % 400 == 0:
            # Neither the caller nor the scheduler holds more than the window.
            assert results._expected <= i // 5 + 1 + window
            # ... and keeps nothing per chunk already consumed.
            assert len(results._arrived) + len(results._sizes) + len(results._order) <= 2 * window
            assert scheduler_tasks(client, pool._session.name) <= window + 2
    results.stop()


@pytest.fixture(params=["dask-cli", "dask-local"])
def xpool_dask(request, dask_clusters):
    client = dask_clusters(request.param).client
    pool = Pool(client=client)
    yield pool, client
    pool.terminate()


def test_the_initializer_runs_in_every_worker_before_its_first_task(xpool_dask):
    _, client = xpool_dask
    with Pool(client=client, initializer=set_greeting, initargs=("hello",)) as pool:
        assert set(pool.map(greeting, range(20), chunksize=1)) == {"hello"}
        plugin = pool._session._plugin
    # Gone from the cluster with its pool: workers joining later skip it.
    assert plugin not in client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.worker_plugins)
    )


def test_terminate_cancels_the_work_on_the_cluster(xpool_dask, tmp_path):
    # Dask cannot stop a task that runs: the two running finish on their
    # workers (results dropped); the queued ones never start.
    _, client = xpool_dask
    pool = Pool(client=client)
    name = pool._session.name
    results = [pool.apply_async(mark_then_sleep, (str(tmp_path), i, 1.5)) for i in range(8)]
    time.sleep(0.5)
    pool.terminate()
    for r in results:
        with pytest.raises(CancelledError):
            r.get(timeout=20)
    time.sleep(3)
    assert len(os.listdir(tmp_path)) <= 2 + 1  # the running ones (+1: one just picked up)
    assert scheduler_tasks(client, name) == 0


def test_ctrl_c_in_get_cancels_the_job_on_the_cluster(xpool_dask, tmp_path):
    pool, client = xpool_dask
    result = pool.starmap_async(
        mark_then_sleep, [(str(tmp_path), i, 1.5) for i in range(8)], chunksize=1
    )
    threading.Timer(0.5, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        result.get(timeout=60)
    time.sleep(3)
    assert len(os.listdir(tmp_path)) <= 2 + 1
    assert scheduler_tasks(client, pool._session.name) == 0
    assert pool.apply(h.square, (4,)) == 16


def test_task_timeout_fails_the_chunk_and_the_pool_goes_on(xpool_dask):
    from ferropool import TaskTimeoutError

    _, client = xpool_dask
    with Pool(client=client, task_timeout=1.0) as pool:
        slow = pool.apply_async(h.sleep_then, (30, "late"))
        quick = [pool.apply_async(h.sleep_then, (0.05, i)) for i in range(4)]
        with pytest.raises(TaskTimeoutError, match="time limit of 1 s"):
            slow.get(timeout=60)
        assert [r.get(timeout=60) for r in quick] == [0, 1, 2, 3]
        assert pool.map(h.square, range(10)) == [i * i for i in range(10)]
    with ProcessPoolExecutor(client=client, task_timeout=1.0) as ex:
        future = ex.submit(h.sleep_then, 30, "late")
        assert isinstance(future.exception(timeout=60), TaskTimeoutError)
        assert ex.submit(h.square, 5).result(timeout=60) == 25


def test_a_scheduler_that_dies_fails_the_work_instead_of_hanging():
    import _dask_clusters as dc
    from ferropool import BrokenProcessPool

    cluster = dc.CliCluster()
    try:
        pool = Pool(client=cluster.client)
        result = pool.map_async(h.sleep_then, [0.5] * 8, chunksize=1)
        time.sleep(0.3)
        scheduler = cluster.processes[0]
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait()
        started = time.monotonic()
        with pytest.raises(BrokenProcessPool, match="lost the Dask scheduler"):
            result.get(timeout=90)
        assert time.monotonic() - started < 60
        with pytest.raises(BrokenProcessPool):
            pool.apply(h.square, (2,))
        pool.terminate()
    finally:
        cluster.close()


def test_stats_lists_the_dask_workers_that_ran_the_chunks(xpool_dask):
    pool, client = xpool_dask
    assert pool.map(h.square, range(40), chunksize=5) == [i * i for i in range(40)]
    stats = pool.stats()
    assert stats.tasks_done == 8  # chunks
    addresses = set(client.nthreads())
    assert {w.address for w in stats.workers} <= addresses
    assert all(w.bytes_sent > 0 and w.bytes_received > 0 for w in stats.workers)
    assert set(client.run(os.getpid).values()) >= {w.pid for w in stats.workers}
    assert "tcp://127.0.0.1:" in repr(stats)
    with ProcessPoolExecutor(client=client) as ex:
        assert list(ex.map(h.square, range(6), chunksize=3)) == [0, 1, 4, 9, 16, 25]
        assert ex.stats().tasks_done == 2


def test_an_initializer_that_raises_fails_the_constructor_and_leaves_nothing():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(RuntimeError, match="initializer failed on purpose"):
        Pool(1, initializer=h.init_fails)
    with pytest.raises(RuntimeError, match="initializer failed on purpose"):
        ProcessPoolExecutor(1, initializer=h.init_fails)

    def running(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def new_processes():
        now = psutil.Process().children(recursive=True)
        return [p for p in now if p.pid not in before and running(p)]

    # The LocalClusters started for them are closed: no worker process is left.
    deadline = time.monotonic() + 30
    while new_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert new_processes() == []
