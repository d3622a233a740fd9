"""The API of ferropool.Pool behaves as multiprocessing.Pool does (Python 3.11):
construction under each start method, apply/map/imap/starmap and their async
forms, chunking, AsyncResult, IMapIterator and callbacks.

Functions sent to workers live in `_helpers` so that spawn and forkserver
workers can import them."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import _helpers as h
import ferropool
import pytest
from _support import METHODS, WORKER_PREFIX, make_pool_with

STYLES = ("ferro", "stdlib")  # ferropool.get_context(m).Pool(...) / Pool(context=mp ctx)


# ----- construction and start methods ----------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("start", METHODS)
def test_start_method_decides_how_workers_start(start, style):
    # Fork workers are copies of the parent as it was when the pool was made;
    # spawn and forkserver workers import the module afresh.
    h.MARK = "changed in parent"
    try:
        pool = make_pool_with(start, style, 2)
    finally:
        h.MARK = "as imported"
    with pool:
        infos = pool.map(h.worker_info, range(8), chunksize=1)
        assert pool.apply(h.square, (7,)) == 49
    names = {name for name, _, _ in infos}
    pids = {pid for _, pid, _ in infos}
    marks = {mark for _, _, mark in infos}
    assert all(name.startswith(WORKER_PREFIX[start]) for name in names), names
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2
    assert marks == ({"changed in parent"} if start == "fork" else {"as imported"})


def test_default_context_is_the_platform_default():
    with ferropool.Pool(2) as pool:
        name, pid, _ = pool.apply(h.worker_info)
    assert name.startswith(WORKER_PREFIX[multiprocessing.get_start_method()])
    assert pid != os.getpid()


def test_processes_none_uses_cpu_count():
    with ferropool.Pool() as pool:
        pids = set(pool.map(h.pid_after, [0.05] * (4 * (os.cpu_count() or 1)), chunksize=1))
    assert 1 <= len(pids) <= (os.cpu_count() or 1)


def test_positional_arguments_in_stdlib_order():
    # Pool(processes, initializer, initargs, maxtasksperchild, context)
    ctx = multiprocessing.get_context("fork")
    with ferropool.Pool(2, h.init_set_global, ("positional",), 3, ctx) as pool:
        assert pool.map(h.read_global, range(4)) == ["positional"] * 4


def test_context_manager_returns_the_pool():
    pool = ferropool.Pool(1)
    with pool as entered:
        assert entered is pool
        assert entered.apply(h.add, (2, 3)) == 5


# ----- apply / apply_async -------------------------------------------------


def test_apply_args_and_kwds(pool):
    assert pool.apply(h.add, (2, 3)) == 5
    assert pool.apply(h.power, [3], {"exp": 3}) == 27
    assert pool.apply(h.power, kwds={"base": 5}) == 25
    assert pool.apply(h.power, args=(2,), kwds={"exp": 10}) == 1024
    assert pool.apply(h.pid) != os.getpid()


def test_apply_async_result(pool):
    res = pool.apply_async(h.add, (20, 22))
    assert res.get(timeout=30) == 42
    assert res.ready()
    assert res.successful()
    assert res.get() == 42  # a result can be read again


def test_apply_async_kwds_only(xpool):
    assert xpool.apply_async(h.power, kwds={"base": 3, "exp": 4}).get(timeout=30) == 81


def test_many_apply_async_in_flight(xpool):
    results = [xpool.apply_async(h.square, (i,)) for i in range(50)]
    assert [r.get(timeout=30) for r in results] == [i * i for i in range(50)]


# ----- map / map_async / starmap / starmap_async -------------------------------


@pytest.mark.parametrize("chunksize", [None, 1, 3, 100])
def test_map(pool, chunksize):
    assert pool.map(h.square, range(20), chunksize) == [i * i for i in range(20)]


@pytest.mark.parametrize("chunksize", [None, 1, 4])
def test_map_of_a_generator(xpool, chunksize):
    assert xpool.map(h.square, h.numbers(10), chunksize=chunksize) == [i * i for i in range(10)]


@pytest.mark.parametrize("source", [range(1000), range(7, 3000, 3), range(500, 0, -1)])
@pytest.mark.parametrize("chunksize", [None, 16, 100, 999])
def test_map_over_a_range_in_range_chunks(xpool, source, chunksize):
    # Large chunks of a range travel as ranges; the function sees the same ints.
    assert xpool.map(h.square, source, chunksize) == [i * i for i in source]
    assert xpool.map_async(type, source, chunksize).get(timeout=30) == [int] * len(source)
    pids = xpool.map(h.pid, range(64), chunksize=32)
    assert len(set(pids[:32])) == 1 and len(set(pids[32:])) == 1


def test_map_chunks_run_whole_in_one_worker(xpool):
    # A chunk is one task: its items all run in the same worker.
    pids = xpool.map(h.pid, range(10), chunksize=5)
    assert len(set(pids[:5])) == 1
    assert len(set(pids[5:])) == 1


def test_map_default_chunksize(xpool):
    # 16 items on 2 workers: ceil(16 / (4 * 2)) = 2 items per chunk.
    pids = xpool.map(h.pid_after, [0.01] * 16)
    assert all(pids[i] == pids[i + 1] for i in range(0, 16, 2)), pids


def test_map_async(pool):
    res = pool.map_async(h.square, range(10), chunksize=3)
    assert res.get(timeout=30) == [i * i for i in range(10)]
    assert res.ready() and res.successful()


def test_map_async_generator_default_chunksize(xpool):
    assert xpool.map_async(h.square, h.numbers(7)).get(timeout=30) == [i * i for i in range(7)]


@pytest.mark.parametrize("chunksize", [None, 1, 2, 50])
def test_starmap(pool, chunksize):
    args = [(i, i + 1) for i in range(9)]
    assert pool.starmap(h.add, args, chunksize) == [2 * i + 1 for i in range(9)]


def test_starmap_of_a_generator(xpool):
    assert xpool.starmap(h.add, h.pairs(6)) == [2 * i + 1 for i in range(6)]
    assert xpool.starmap(h.power, h.pairs(4), chunksize=3) == [i ** (i + 1) for i in range(4)]


@pytest.mark.parametrize("chunksize", [None, 1, 3])
def test_starmap_async(pool, chunksize):
    res = pool.starmap_async(h.power, [(2, i) for i in range(8)], chunksize)
    assert res.get(timeout=30) == [2**i for i in range(8)]


def test_starmap_async_of_a_generator(xpool):
    assert xpool.starmap_async(h.add, h.pairs(5)).get(timeout=30) == [1, 3, 5, 7, 9]


# ----- imap / imap_unordered -----------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_imap(pool, chunksize):
    it = pool.imap(h.square, range(15), chunksize)
    assert iter(it) is it
    assert list(it) == [i * i for i in range(15)]


def test_imap_default_chunksize_and_generator(xpool):
    assert list(xpool.imap(h.square, h.numbers(10))) == [i * i for i in range(10)]


@pytest.mark.parametrize("chunksize", [1, 4])
def test_imap_of_a_generator_with_chunksize(xpool, chunksize):
    assert list(xpool.imap(h.square, h.numbers(10), chunksize)) == [i * i for i in range(10)]


def test_imap_keeps_input_order_when_results_arrive_out_of_order(xpool):
    # The first item takes longest, so later results are ready first.
    items = [(0.3, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d")]
    assert list(xpool.imap(h.delayed, items)) == ["a", "b", "c", "d"]
    assert list(xpool.imap(h.delayed, items, 2)) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_imap_unordered(pool, chunksize):
    it = pool.imap_unordered(h.square, range(15), chunksize)
    assert iter(it) is it
    assert sorted(it) == [i * i for i in range(15)]


def test_imap_next_and_stopiteration(xpool):
    it = xpool.imap(h.square, [3, 4])
    assert it.next() == 9
    assert next(it) == 16
    with pytest.raises(StopIteration):
        it.next()
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_next(xpool):
    it = xpool.imap_unordered(h.square, [5])
    assert it.next(timeout=30) == 25
    with pytest.raises(StopIteration):
        it.next(timeout=30)


# ----- empty input and chunksize edge cases ----------------------------------


def test_empty_input(pool):
    assert pool.map(h.square, []) == []
    assert pool.map(h.square, [], chunksize=5) == []
    assert pool.map(h.square, h.numbers(0)) == []
    assert pool.starmap(h.add, []) == []
    assert pool.map_async(h.square, []).get(timeout=30) == []
    assert pool.starmap_async(h.add, h.pairs(0)).get(timeout=30) == []
    assert list(pool.imap(h.square, [])) == []
    assert list(pool.imap(h.square, h.numbers(0), 3)) == []
    assert list(pool.imap_unordered(h.square, [])) == []
    assert list(pool.imap_unordered(h.square, [], 4)) == []


def test_map_async_of_empty_input_is_ready_at_once(xpool):
    res = xpool.map_async(h.square, [])
    assert res.get(timeout=30) == []
    assert res.ready() and res.successful()


def test_map_async_of_empty_input_does_not_call_callback(xpool):
    # A quirk of the stdlib's MapResult (3.11): with nothing to map, the result
    # is ready at once and the callback is never called.
    called = []
    res = xpool.map_async(h.square, [], callback=called.append)
    assert res.get(timeout=30) == []
    res2 = xpool.starmap_async(h.add, [], callback=called.append)
    assert res2.get(timeout=30) == []
    time.sleep(0.2)
    assert called == []


def test_chunksize_larger_than_input(pool):
    assert pool.map(h.square, range(3), chunksize=100) == [0, 1, 4]
    assert pool.starmap(h.add, [(1, 2)], chunksize=100) == [3]
    assert list(pool.imap(h.square, range(3), 100)) == [0, 1, 4]
    assert sorted(pool.imap_unordered(h.square, range(3), 100)) == [0, 1, 4]


def test_chunksize_not_dividing_input(xpool):
    assert xpool.map(h.square, range(10), chunksize=3) == [i * i for i in range(10)]
    assert list(xpool.imap(h.square, range(10), 4)) == [i * i for i in range(10)]


# ----- AsyncResult ---------------------------------------------------------


def test_async_result_before_and_after_ready(xpool):
    res = xpool.apply_async(h.sleep_then, (0.5, "done"))
    assert not res.ready()
    with pytest.raises(ValueError, match="not ready"):
        res.successful()
    assert res.get(timeout=30) == "done"
    assert res.ready()
    assert res.successful()


def test_async_result_wait(xpool):
    res = xpool.apply_async(h.sleep_then, (0.5, 1))
    assert res.wait(0.01) is None
    assert not res.ready()
    assert res.wait(30) is None
    assert res.ready()
    assert res.wait() is None
    assert res.get(timeout=0) == 1


def test_async_result_get_timeout_then_value(pool):
    res = pool.apply_async(h.sleep_then, (0.5, "late"))
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(timeout=0.01)
    assert not res.ready()
    assert res.get(timeout=30) == "late"


def test_map_async_get_timeout(xpool):
    res = xpool.map_async(h.sleep_then, [0.5, 0.5])
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(timeout=0.01)
    assert res.get(timeout=30) == [None, None]


def test_timeout_error_is_the_stdlib_class():
    assert ferropool.TimeoutError is multiprocessing.TimeoutError


def test_async_result_of_failed_task(xpool):
    res = xpool.apply_async(h.raise_value_error, ("nope",))
    res.wait(30)
    assert res.ready()
    assert not res.successful()
    with pytest.raises(ValueError, match="nope"):
        res.get()


# ----- IMapIterator.next(timeout) -------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_imap_next_timeout(pool, ordered):
    imap = pool.imap if ordered else pool.imap_unordered
    it = imap(h.sleep_then, [0.5])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.01)
    assert it.next(timeout=30) is None
    with pytest.raises(StopIteration):
        it.next(timeout=30)


# ----- callbacks -----------------------------------------------------------


def test_callback_runs_in_parent_in_another_thread(pool):
    seen = []

    def callback(value):
        seen.append((value, os.getpid(), threading.get_ident()))

    assert pool.apply_async(h.square, (6,), callback=callback).get(timeout=30) == 36
    assert seen == [(36, os.getpid(), seen[0][2])]
    assert seen[0][2] != threading.get_ident()


def test_get_returns_only_after_callback_ran(pool):
    done = []

    def slow_callback(value):
        time.sleep(0.3)
        done.append(value)

    assert pool.apply_async(h.add, (1, 2), callback=slow_callback).get(timeout=30) == 3
    assert done == [3]
    res = pool.map_async(h.square, range(4), callback=slow_callback)
    res.wait(30)
    assert res.ready()
    assert done == [3, [0, 1, 4, 9]]


def test_ready_only_after_callback_ran(xpool):
    release = threading.Event()
    entered = threading.Event()

    def blocking_callback(value):
        entered.set()
        release.wait(30)

    res = xpool.apply_async(h.square, (2,), callback=blocking_callback)
    assert entered.wait(30)
    assert not res.ready()
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(timeout=0.05)
    release.set()
    assert res.get(timeout=30) == 4


def test_error_callback_gets_the_exception(pool):
    errors = []
    calls = []
    res = pool.apply_async(
        h.raise_value_error, ("boom",), callback=calls.append, error_callback=errors.append
    )
    with pytest.raises(ValueError, match="boom") as info:
        res.get(timeout=30)
    assert calls == []
    assert len(errors) == 1
    assert errors[0] is info.value


def test_error_callback_not_called_on_success(xpool):
    errors = []
    calls = []
    res = xpool.apply_async(h.square, (3,), callback=calls.append, error_callback=errors.append)
    assert res.get(timeout=30) == 9
    assert calls == [9]
    assert errors == []


def test_map_async_callbacks(pool):
    calls, errors = [], []
    res = pool.map_async(
        h.square, range(6), chunksize=2, callback=calls.append, error_callback=errors.append
    )
    assert res.get(timeout=30) == [0, 1, 4, 9, 16, 25]
    assert calls == [[0, 1, 4, 9, 16, 25]]
    assert errors == []
    res = pool.map_async(
        h.fail_on, range(6), chunksize=2, callback=calls.append, error_callback=errors.append
    )
    with pytest.raises(ValueError, match="bad item 2"):
        res.get(timeout=30)
    assert len(calls) == 1
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert str(errors[0]) == "bad item 2"


def test_starmap_async_callbacks(xpool):
    calls, errors = [], []
    res = xpool.starmap_async(h.add, [(1, 2), (3, 4)], callback=calls.append)
    assert res.get(timeout=30) == [3, 7]
    assert calls == [[3, 7]]
    res = xpool.starmap_async(h.fail_on, [(1, 1)], error_callback=errors.append)
    with pytest.raises(ValueError):
        res.get(timeout=30)
    assert [str(e) for e in errors] == ["bad item 1"]


def test_callbacks_run_for_every_result(xpool):
    seen = []
    lock = threading.Lock()

    def callback(value):
        with lock:
            seen.append(value)

    results = [xpool.apply_async(h.square, (i,), callback=callback) for i in range(30)]
    for r in results:
        r.get(timeout=30)
    assert sorted(seen) == sorted(i * i for i in range(30))


# ----- the package's names ---------------------------------------------------


def test_package_names_are_ferropools_and_the_stdlibs():
    from ferropool import context, executor, pool

    assert context.__name__ == "ferropool.context", "its own submodule, not the stdlib's"

    assert ferropool.Pool is pool.Pool
    assert ferropool.ProcessPoolExecutor is executor.ProcessPoolExecutor
    assert ferropool.WorkerLostError.__module__ == "ferropool._errors"
    for name in ("Pool", "ProcessPoolExecutor", "get_context", "WorkerLostError", "Queue"):
        assert name in dir(ferropool), name
    assert ferropool.Queue is multiprocessing.Queue
    assert ferropool.shared_memory.SharedMemory is not None
    namespace: dict = {}
    exec("from ferropool import *", namespace)
    assert namespace["Pool"] is pool.Pool and namespace["Lock"] is multiprocessing.Lock
    with pytest.raises(AttributeError, match="no_such_name"):
        ferropool.no_such_name  # noqa: B018


def test_a_worker_imports_only_what_it_needs():
    """What a spawned worker imports to start (its start-up time): not the
    pools, not multiprocessing.pool, typing or logging."""
    import subprocess
    import sys

    code = (
        "import sys; from ferropool._worker import spawn_main; print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "ferropool._worker" in loaded
    for heavy in (
        "ferropool.pool",
        "ferropool.executor",
        "multiprocessing.pool",
        "typing",
        "logging",
    ):
        assert heavy not in loaded, heavy


def test_a_sized_map_of_many_range_chunks_goes_on_in_a_feeder(fpool):
    """Past 16,384 chunks a sized map's feeding is handed to a feeder
    thread; a range's chunks still travel as ranges and come back whole."""
    n = 16 * 20_000
    assert fpool.map(abs, range(-n, 0), chunksize=16) == list(range(n, 0, -1))
