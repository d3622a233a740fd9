"""The life of a pool: close/join/terminate and the context manager, what is
left behind (processes, threads), the ResourceWarning of a forgotten pool,
initializer/initargs, maxtasksperchild and the log records of worker starts,
as with multiprocessing.Pool (Python 3.11)."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time

import _helpers as h
import ferropool
import psutil
import pytest
from _support import descendants, ferropool_threads, still_running, wait_gone

# Process-wide helpers of the stdlib that outlive any one pool (and are
# started by Lock/Value under spawn, or by the stdlib's own forkserver).
SHARED_HELPERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "ferropool._forkserver",
)


def _is_shared_helper(proc):
    try:
        cmdline = " ".join(proc.cmdline())
        ppid = proc.ppid()
    except psutil.Error:
        return False
    return ppid == os.getpid() and any(name in cmdline for name in SHARED_HELPERS)


def pool_processes(before):
    """Processes below this one that were not there in `before` (the pool's
    workers and helpers)."""
    known = {p.pid for p in before}
    return [p for p in descendants() if p.pid not in known and not _is_shared_helper(p)]


def assert_nothing_left(procs, threads_before):
    # join()/terminate() return once the workers are gone: no grace period
    # for processes, and the pool's direct children are reaped (no zombies).
    assert still_running(procs) == []
    mine = [p for p in procs if _ppid(p) == os.getpid()]
    assert mine == [], f"unreaped children: {mine}"
    assert ferropool_threads(exclude=threads_before) == []


def _ppid(proc):
    try:
        return proc.ppid()
    except psutil.NoSuchProcess:
        return None


# ----- close / join / terminate ----------------------------------------------


def test_close_join_finishes_submitted_work_and_leaves_nothing(method):
    before = descendants()
    threads = set(threading.enumerate())
    pool = ferropool.get_context(method).Pool(2)
    try:
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]  # workers are up
        started = pool_processes(before)
        assert started, "the pool started no process"
        pending = pool.apply_async(h.sleep_then, (0.3, "finished"))
        mapped = pool.map_async(h.square, range(10), chunksize=1)
        pool.close()
        pool.join()
        assert pending.get(timeout=0) == "finished"
        assert mapped.get(timeout=0) == [i * i for i in range(10)]
    finally:
        pool.terminate()
    assert_nothing_left(started, threads)


def test_close_join_after_imap(method):
    before = descendants()
    threads = set(threading.enumerate())
    pool = ferropool.get_context(method).Pool(2)
    try:
        assert pool.apply(h.square, (2,)) == 4
        it = pool.imap(h.square, range(10))
        started = pool_processes(before)
        pool.close()
        assert list(it) == [i * i for i in range(10)]
        pool.join()
    finally:
        pool.terminate()
    assert_nothing_left(started, threads)


def test_terminate_stops_busy_workers_and_leaves_nothing(method):
    before = descendants()
    threads = set(threading.enumerate())
    pool = ferropool.get_context(method).Pool(2)
    try:
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]  # workers are up
        started = pool_processes(before)
        busy = pool.map_async(h.sleep_then, [30, 30], chunksize=1)
        it = pool.imap(h.sleep_then, [30, 30, 30])
        time.sleep(0.3)  # let the workers pick up their 30 s tasks
    finally:
        pool.terminate()
    assert_nothing_left(started, threads)
    assert not busy.ready() or not busy.successful()
    del it


def test_terminate_then_join(fpool):
    fpool.apply_async(h.sleep_then, (30,))
    fpool.terminate()
    fpool.join()
    with pytest.raises(ValueError, match="Pool not running"):
        fpool.apply(h.square, (1,))


def test_close_then_terminate_then_join():
    before = descendants()
    pool = ferropool.Pool(2)
    assert pool.apply(h.square, (3,)) == 9
    started = pool_processes(before)
    pool.apply_async(h.sleep_then, (30,))
    pool.close()
    pool.terminate()
    pool.join()
    assert still_running(started) == []
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(h.square, (1,))


def test_repeated_close_terminate_join_are_harmless():
    pool = ferropool.Pool(2)
    assert pool.map(h.square, range(3)) == [0, 1, 4]
    pool.close()
    pool.close()
    pool.join()
    pool.join()
    pool.terminate()
    pool.terminate()
    pool.join()


def test_join_waits_for_long_work_after_close(fpool):
    results = [fpool.apply_async(h.sleep_then, (0.2, i)) for i in range(4)]
    fpool.close()
    fpool.join()
    assert all(r.ready() for r in results)
    assert [r.get(timeout=0) for r in results] == [0, 1, 2, 3]


def test_unfinished_work_fails_after_terminate(fpool):
    # ferropool's documented improvement: the stdlib leaves such results
    # unfinished forever; ferropool fails them with BrokenProcessPool.
    res = fpool.apply_async(h.sleep_then, (30,))
    time.sleep(0.2)
    fpool.terminate()
    with pytest.raises(ferropool.BrokenProcessPool):
        res.get(timeout=10)


# ----- context manager -----------------------------------------------------------


def test_exit_terminates(method):
    before = descendants()
    threads = set(threading.enumerate())
    with ferropool.get_context(method).Pool(2) as pool:
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]  # workers are up
        pool.apply_async(h.sleep_then, (30,))  # __exit__ must not wait for it
        started = pool_processes(before)
    assert_nothing_left(started, threads)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(h.square, (1,))
    pool.join()  # allowed after terminate


def test_exit_on_exception_terminates_and_propagates():
    before = descendants()
    with pytest.raises(KeyError, match="from the with block"):
        with ferropool.Pool(2) as pool:
            assert pool.apply(h.square, (2,)) == 4
            started = pool_processes(before)
            raise KeyError("from the with block")
    assert wait_gone(started) == []
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(h.square, [1])


# ----- a pool garbage-collected while running ------------------------------------


def test_resource_warning_for_collected_running_pool():
    pool = ferropool.Pool(2)
    assert pool.map(h.square, range(3)) == [0, 1, 4]
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del pool
        gc.collect()


def test_no_resource_warning_after_close_join(recwarn):
    pool = ferropool.Pool(2)
    assert pool.apply(h.square, (3,)) == 9
    pool.close()
    pool.join()
    del pool
    gc.collect()
    assert [w for w in recwarn if issubclass(w.category, ResourceWarning)] == []


def test_no_resource_warning_after_terminate(recwarn):
    with ferropool.Pool(2) as pool:
        assert pool.apply(h.square, (3,)) == 9
    del pool
    gc.collect()
    assert [w for w in recwarn if issubclass(w.category, ResourceWarning)] == []


# ----- initializer / initargs ----------------------------------------------------


def test_initializer_sets_globals_seen_by_tasks(make_pool):
    pool = make_pool(2, initializer=h.init_set_global, initargs=("ready",))
    assert pool.map(h.read_global, range(8), chunksize=1) == ["ready"] * 8
    assert pool.apply(h.read_global) == "ready"


def test_initargs_may_be_a_list():
    with ferropool.Pool(1, h.init_set_global, [42]) as pool:
        assert pool.apply(h.read_global) == 42


def test_initializer_runs_again_in_replacement_workers(make_pool):
    pool = make_pool(2, initializer=h.init_set_global, initargs=(7,), maxtasksperchild=1)
    assert pool.map(h.read_global, range(6), chunksize=1) == [7] * 6


def test_seed_pattern_lock_and_value_through_initargs(method):
    # The stdlib's example: share a Lock and a Value of the same context with
    # the workers through initargs.
    ctx = ferropool.get_context(method)
    lock = ctx.Lock()
    counter = ctx.Value("i", 0)
    with ctx.Pool(2, initializer=h.init_lock_counter, initargs=(lock, counter)) as pool:
        assert pool.map(h.increment, range(20), chunksize=1) == list(range(20))
        assert pool.apply(h.increment, (5,)) == 5
    assert counter.value == 21


def test_seed_pattern_with_stdlib_context(method):
    ctx = multiprocessing.get_context(method)
    lock = ctx.Lock()
    counter = ctx.Value("i", 0)
    pool = ferropool.Pool(2, initializer=h.init_lock_counter, initargs=(lock, counter), context=ctx)
    with pool:
        res = pool.map_async(h.increment, range(10), chunksize=2)
        assert res.get(timeout=30) == list(range(10))
    assert counter.value == 10


# ----- maxtasksperchild -----------------------------------------------------------


def test_maxtasksperchild_1_replaces_worker_after_each_task(make_pool):
    pool = make_pool(2, maxtasksperchild=1)
    pids = pool.map(h.pid, range(8), chunksize=1)
    assert len(set(pids)) == 8
    assert os.getpid() not in pids
    # Another wave still works, on fresh workers again.
    more = [pool.apply_async(h.pid) for _ in range(4)]
    more_pids = [r.get(timeout=30) for r in more]
    assert len(set(pids) | set(more_pids)) == 12


def test_maxtasksperchild_2_each_worker_runs_at_most_two_tasks(make_pool):
    pool = make_pool(2, maxtasksperchild=2)
    pids = pool.map(h.pid_after, [0.02] * 12, chunksize=1)
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert max(counts.values()) <= 2
    assert len(counts) >= 6


def test_maxtasksperchild_results_stay_correct(make_pool):
    pool = make_pool(2, maxtasksperchild=3)
    assert pool.map(h.square, range(40), chunksize=1) == [i * i for i in range(40)]
    assert list(pool.imap(h.square, range(20))) == [i * i for i in range(20)]
    assert sorted(pool.imap_unordered(h.square, range(20), 2)) == [i * i for i in range(20)]
    assert pool.starmap(h.add, [(i, i) for i in range(10)], 1) == [2 * i for i in range(10)]
    assert [pool.apply(h.square, (i,)) for i in range(7)] == [i * i for i in range(7)]


def test_maxtasksperchild_counts_chunks_as_tasks():
    # A task is a chunk: a worker limited to one task runs a whole chunk.
    with ferropool.Pool(2, maxtasksperchild=1) as pool:
        pids = pool.map(h.pid, range(12), chunksize=3)
    chunks = [pids[i : i + 3] for i in range(0, 12, 3)]
    assert all(len(set(c)) == 1 for c in chunks)
    assert len({c[0] for c in chunks}) == 4


def test_maxtasksperchild_no_process_left(method):
    before = descendants()
    threads = set(threading.enumerate())
    pool = ferropool.get_context(method).Pool(2, maxtasksperchild=1)
    try:
        assert pool.map(h.square, range(6), chunksize=1) == [i * i for i in range(6)]
        started = pool_processes(before)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    assert_nothing_left(started + pool_processes(before), threads)


# ----- logging ----------------------------------------------------------------------


def _wait_for_messages(caplog, needle, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [
            r for r in caplog.records if r.name.startswith("ferropool") and needle in r.getMessage()
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_worker_start_is_logged(caplog, method):
    caplog.set_level(logging.INFO, logger="ferropool")
    with ferropool.get_context(method).Pool(2) as pool:
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
        started = _wait_for_messages(caplog, "started", 2)
    assert len(started) >= 2, caplog.text
    assert all(r.levelno == logging.INFO for r in started)
    assert all(r.name == "ferropool" for r in started)


def test_worker_replacement_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="ferropool")
    with ferropool.Pool(2, maxtasksperchild=1) as pool:
        pids = pool.map(h.pid, range(4), chunksize=1)
        replaced = _wait_for_messages(caplog, "task limit", 2)
        started = _wait_for_messages(caplog, "started", 4)
    assert len(set(pids)) == 4
    assert len(replaced) >= 2, caplog.text
    assert len(started) >= 4, caplog.text
