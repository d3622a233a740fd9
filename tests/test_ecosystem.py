"""Libraries that take a pool or an executor, used with ferropool's as their
users would: tqdm's `process_map` (which overrides `submit` to count
progress), dask's `pool=` (which tells a Pool from an executor with
`isinstance(pool, multiprocessing.pool.Pool)` and reads `len(pool._pool)`),
and the stdlib's private surface such code reads (see ferropool._compat)."""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing.pool
import os
import signal
import time

import _helpers as h
import ferropool
import pytest

pytestmark = pytest.mark.timeout(60)


def test_a_pool_is_an_instance_of_the_stdlibs_pool_class(make_pool):
    pool = make_pool(2)
    assert isinstance(pool, multiprocessing.pool.Pool)
    assert isinstance(pool, ferropool.Pool)
    assert type(pool) is ferropool.Pool
    assert issubclass(pool.__class__, ferropool.Pool)
    assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]


def test_an_executor_is_an_instance_of_the_stdlibs_executor_class():
    with ferropool.ProcessPoolExecutor(2) as ex:
        assert isinstance(ex, concurrent.futures.ProcessPoolExecutor)
        assert isinstance(ex, concurrent.futures.Executor)
        assert type(ex) is ferropool.ProcessPoolExecutor
        assert ex.submit(h.square, 3).result() == 9


def test_a_subclass_keeps_its_own_class_and_the_stdlibs():
    class Mine(ferropool.Pool):
        pass

    with Mine(1) as pool:
        assert isinstance(pool, Mine)
        assert isinstance(pool, multiprocessing.pool.Pool)
        assert pool.__class__.__name__ == "Mine"


def test_private_pool_list_has_a_handle_per_worker(make_pool):
    pool = make_pool(3)
    # One entry per worker from the start; a worker still starting (spawn,
    # forkserver) has no pid yet.
    assert len(pool._pool) == pool._processes == 3
    deadline = time.monotonic() + 20
    while not all(p.is_alive() for p in pool._pool) and time.monotonic() < deadline:
        time.sleep(0.02)
    handles = pool._pool
    pids = {pool.apply(h.pid) for _ in range(30)}
    assert pids <= {handle.pid for handle in handles}
    assert all(handle.is_alive() and handle.exitcode is None for handle in handles)
    victim = handles[0]
    os.kill(victim.pid, signal.SIGKILL)
    while victim.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not victim.is_alive()
    assert victim.exitcode == -signal.SIGKILL
    assert f"exitcode={-signal.SIGKILL}" in repr(victim)
    # The replacement takes its place; the list keeps one entry per worker.
    while len([p for p in pool._pool if p.is_alive()]) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(pool._pool) == 3
    assert victim.pid not in {handle.pid for handle in pool._pool}


@pytest.mark.parametrize("chunksize", [1, 4])
def test_tqdm_process_map_counts_progress_on_ferropool(monkeypatch, chunksize):
    """tqdm's process_map builds `concurrent.futures.ProcessPoolExecutor`
    and counts a chunk each time a future its `submit` made is done."""
    from tqdm.contrib.concurrent import process_map

    made = []

    class Recording(ferropool.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Recording)
    out = io.StringIO()
    got = process_map(
        h.square,
        range(40),
        max_workers=2,
        chunksize=chunksize,
        file=out,
        ascii=True,
        mininterval=0,
        miniters=1,
    )
    assert got == [x * x for x in range(40)]
    assert len(made) == 1
    final = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    # As with the stdlib's executor: one step per chunk.
    chunks = -(-40 // chunksize)
    assert f"{chunks}/40" in final, final
    if chunksize == 1:
        assert final.startswith("100%"), final


@pytest.mark.parametrize("where", ["instance", "subclass"])
@pytest.mark.parametrize("buffersize", [None, 2])
def test_map_goes_through_an_overridden_submit(where, buffersize):
    calls = []

    class Counting(ferropool.ProcessPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            calls.append(args)
            return super().submit(fn, *args, **kwargs)

    if where == "subclass":
        ex = Counting(2)
    else:
        ex = ferropool.ProcessPoolExecutor(2)
        plain_submit = ex.submit

        def submit(fn, *args, **kwargs):
            calls.append(args)
            return plain_submit(fn, *args, **kwargs)

        ex.submit = submit
    with ex:
        kwargs = {} if buffersize is None else {"buffersize": buffersize}
        got = list(ex.map(h.add, range(10), range(10, 20), chunksize=3, **kwargs))
        assert got == [a + b for a, b in zip(range(10), range(10, 20))]
        assert len(calls) == 4  # one submit per chunk, as the stdlib's map
        # A chunk's error is raised at its position; the rest are cancelled.
        results = ex.map(h.fail_on, range(9), chunksize=2, **kwargs)
        assert [next(results) for _ in range(2)] == [0, 1]
        with pytest.raises(ValueError):
            next(results)


def test_map_through_an_overridden_submit_times_out():
    ex = ferropool.ProcessPoolExecutor(1)
    plain_submit = ex.submit
    ex.submit = lambda fn, *args: plain_submit(fn, *args)
    with ex:
        results = ex.map(h.sleep_then, [5, 5], timeout=0.3)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(results)
        ex.shutdown(wait=True, cancel_futures=True)


# dask.compute imports distributed when it is installed (see conftest's
# pytest_collection_modifyitems): in the pytest process of the dask tests.
@pytest.mark.dask
def test_dask_accepts_a_ferropool_pool():
    import dask
    import dask.bag as db

    with ferropool.Pool(2) as pool:
        with dask.config.set(scheduler="processes", pool=pool):
            total = db.from_sequence(range(100), npartitions=8).map(h.square).sum().compute()
    assert total == sum(x * x for x in range(100))


@pytest.mark.dask  # as the test above
def test_dask_accepts_a_ferropool_executor():
    import dask
    import dask.bag as db

    with ferropool.ProcessPoolExecutor(2) as ex:
        with dask.config.set(scheduler="processes", pool=ex):
            total = db.from_sequence(range(50), npartitions=5).map(h.square).sum().compute()
    assert total == sum(x * x for x in range(50))
