"""Fork pools: workers are forks of the caller, as the stdlib's (the first
ones when the pool is made, replacements when they are needed), made while
every engine thread of the process is parked (the fork gate)."""

from __future__ import annotations

import os
import threading

import _helpers as h
import ferropool
import psutil
from _helpers import square


def test_fork_pools_made_while_another_pool_is_busy():
    busy = ferropool.get_context("fork").Pool(2)
    stop = threading.Event()
    errors = []

    def keep_busy():
        try:
            while not stop.is_set():
                assert busy.map(square, range(100), chunksize=1) == [i * i for i in range(100)]
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        for _ in range(10):
            with ferropool.get_context("fork").Pool(2) as pool:
                assert pool.map(square, range(20)) == [i * i for i in range(20)]
    finally:
        stop.set()
        t.join()
        busy.terminate()
    assert errors == []


def _fork_pool(**kwargs):
    return ferropool.get_context("fork").Pool(2, **kwargs)


def test_fork_workers_are_children_of_the_caller():
    with _fork_pool() as pool:
        pids = {pid for _, pid, _ in pool.map(h.worker_info, range(8), chunksize=1)}
        assert pids and all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)
        assert {p.pid for p in psutil.Process().children()} >= pids


def test_replacements_are_copies_of_the_parent_when_they_start():
    # As the stdlib: a worker started later (maxtasksperchild) is forked then.
    h.MARK = "when the pool was made"
    try:
        with _fork_pool(maxtasksperchild=1) as pool:
            first = {mark for _, _, mark in pool.map(h.worker_info, range(2), chunksize=1)}
            h.MARK = "later"
            later = [mark for _, _, mark in pool.map(h.worker_info, range(6), chunksize=1)]
    finally:
        h.MARK = "as imported"
    assert first == {"when the pool was made"}
    # The two replacements of the first map's workers may have started
    # before the change; every worker after them did not.
    assert later.count("later") >= 4, later


def test_pool_made_in_a_thread_outlives_that_thread():
    """Workers die with the thread that forked them (parent-death signal):
    a pool made in a short-lived thread has its workers forked by its service
    thread, still as copies of the parent at Pool() time."""
    made = []
    h.MARK = "while the thread made the pool"

    def make():
        made.append(_fork_pool())
        h.MARK = "after Pool() returned"

    try:
        t = threading.Thread(target=make)
        t.start()
        t.join()
        pool = made[0]
        with pool:
            infos = pool.map(h.worker_info, range(8), chunksize=1)
            assert pool.apply(square, (7,)) == 49
    finally:
        h.MARK = "as imported"
    assert {mark for _, _, mark in infos} == {"while the thread made the pool"}
    assert len({pid for _, pid, _ in infos}) <= 2


def test_crash_loops_next_to_a_busy_pool_never_hang():
    """Replacement workers forked while other workers' sockets are open in
    the parent inherit copies of them; a worker's death must still be seen
    (the engine watches its pid), or its task would wait for ever."""
    import _fault_helpers as fh

    busy = ferropool.get_context("fork").Pool(2)
    stop = threading.Event()

    def keep_busy():
        while not stop.is_set():
            busy.map(square, range(50), chunksize=1)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        for _ in range(30):
            with ferropool.ProcessPoolExecutor(2, mp_context=ferropool.get_context("fork")) as ex:
                assert ex.submit(square, 3).result(timeout=30) == 9
                futures = [ex.submit(fh.exit_worker, i) for i in range(60)]
                for f in futures:
                    assert f.exception(timeout=30) is not None
    finally:
        stop.set()
        t.join()
        busy.terminate()
