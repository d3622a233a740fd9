"""Fault injection: the per-worker memory limit; terminate, kill_workers and
garbage collection; and a soak test that kills workers at random while
several hundred tasks run.

Shared helpers: _fault_cases.py and _fault_helpers.py; faults that need a
separate parent process are in test_faults_process.py. Time limits are
hang guards, never speed requirements."""

from __future__ import annotations

import gc
import logging
import random
import re
import threading
import time

import _fault_helpers as fh
import ferropool
import psutil
import pytest
from _fault_cases import (
    assert_replaced,
    make_pool,
    rss,
)
from _support import METHODS
from ferropool import (
    BrokenProcessPool,
    ProcessPoolExecutor,
    WorkerLostError,
)

# ============================================================================
# 8. Memory limit per worker
# ============================================================================


def _memory_limit():
    """A limit well above what any worker of this process uses at rest
    (fork workers share the parent's pages, which count as resident)."""
    return max(rss(), 100 * 2**20) + 150 * 2**20


def _memory_log_lines(caplog, pid):
    return [
        r
        for r in caplog.records
        if r.name.startswith("ferropool")
        and "memory" in r.getMessage().lower()
        and str(pid) in r.getMessage()
    ]


def _wait_memory_log_lines(caplog, pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not _memory_log_lines(caplog, pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _memory_log_lines(caplog, pid)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_past_memory_limit_is_replaced_after_its_task(caplog, tracker, method):
    caplog.set_level(logging.INFO, logger="ferropool")
    limit = _memory_limit()
    with fh.guarded(make_pool(method, max_memory_per_child=limit)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        workers = fh.wait_for_workers(2)
        tracker.observe()
        hog = pool.apply_async(fh.hog_memory, (limit,))
        rest = [pool.apply_async(fh.pid_square, (i,)) for i in range(20)]
        hog_pid = hog.get(timeout=30)  # the task itself succeeds
        assert [v for _, v in (r.get(timeout=30) for r in rest)] == [i * i for i in range(20)]
        assert fh.wait_pid_gone(hog_pid) is not None, "the worker past its limit still runs"
        assert_replaced(hog_pid)
        # The other worker, under the limit, stays.
        others = [p for p in workers if p.pid != hog_pid]
        assert fh.still_running(others) == others
        lines = _wait_memory_log_lines(caplog, hog_pid)
        assert lines, caplog.text
        assert lines[0].levelno >= logging.INFO
        assert pool.map(fh.square, range(6)) == [0, 1, 4, 9, 16, 25]
        tracker.observe()
    tracker.assert_clean()


def test_executor_worker_past_memory_limit_is_replaced(caplog, tracker):
    caplog.set_level(logging.INFO, logger="ferropool")
    limit = _memory_limit()
    with fh.guarded(ProcessPoolExecutor(2, max_memory_per_child=limit)) as ex:
        assert ex.submit(fh.square, 2).result(timeout=30) == 4
        hog_pid = ex.submit(fh.hog_memory, limit).result(timeout=30)
        tracker.observe()
        assert fh.wait_pid_gone(hog_pid) is not None
        assert_replaced(hog_pid)
        assert ex.submit(fh.square, 3).result(timeout=30) == 9
        assert _wait_memory_log_lines(caplog, hog_pid), caplog.text
    tracker.assert_clean()


def test_workers_under_the_memory_limit_are_kept():
    with fh.guarded(ferropool.Pool(2, max_memory_per_child=_memory_limit() + 2**30)) as pool:
        pids = {p for p, _ in pool.map(fh.pid_square, range(40), chunksize=1)}
        pids |= {p for p, _ in pool.map(fh.pid_square, range(40), chunksize=1)}
        assert len(pids) <= 2


# ============================================================================
# 9. Terminate, kill_workers, garbage collection
# ============================================================================


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_terminate_stops_busy_and_stubborn_workers(tmp_path, tracker, method):
    stubborn_file = tmp_path / "stubborn.pid"
    busy_file = tmp_path / "busy.pid"
    pool = make_pool(method)
    try:
        assert len(fh.wait_ready(pool, 2)) == 2
        stubborn = pool.apply_async(fh.ignore_sigterm_then_sleep, (str(stubborn_file), 60))
        pids = [fh.read_pid(stubborn_file)]
        busy = pool.apply_async(fh.report_then_sleep, (str(busy_file), 60))
        pids.append(fh.read_pid(busy_file))
        queued = pool.apply_async(fh.square, (3,))
        tracker.observe()
    finally:
        fh.stop_guarded(pool)
    for res in (stubborn, busy, queued):
        exc = fh.outcome_of(res.get, 10)
        assert isinstance(exc, BrokenProcessPool), repr(exc)
    assert all(not fh.alive(pid) for pid in pids)
    tracker.assert_clean()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop", ["kill_workers", "terminate_workers"])
def test_executor_kill_and_terminate_workers_leave_nothing(tmp_path, tracker, stop):
    stubborn_file = tmp_path / "stubborn.pid"
    ex = ProcessPoolExecutor(2)
    futures = [ex.submit(fh.ignore_sigterm_then_sleep, str(stubborn_file), 60)]
    futures += [ex.submit(fh.sleep_then, 60) for _ in range(5)]
    fh.read_pid(stubborn_file)
    tracker.observe()
    getattr(ex, stop)()
    for f in futures:
        assert f.cancelled() or isinstance(f.exception(timeout=10), BrokenProcessPool)
    fh.stop_guarded(ex)
    tracker.assert_clean()


@pytest.mark.timeout(60)
def test_forgotten_busy_pool_is_stopped_by_garbage_collection(tmp_path, tracker):
    pidfile = tmp_path / "busy.pid"
    pool = ferropool.Pool(2)
    pool.apply_async(fh.report_then_sleep, (str(pidfile), 60))
    pid = fh.read_pid(pidfile)
    tracker.observe()
    with pytest.warns(ResourceWarning):
        del pool
        gc.collect()
    assert fh.wait_pid_gone(pid) is not None
    tracker.assert_clean()


# ============================================================================
# Soak: workers killed at random while several hundred tasks run
# ============================================================================


@pytest.mark.timeout(120)
def test_soak_random_kills(tracker):
    """600 tasks (apply_async, imap and imap_unordered) while a thread
    SIGKILLs a random worker five times. Every task returns its correct
    result or raises WorkerLostError; none is lost silently; the pool ends
    healthy. Five deaths stay under the crash-loop limit."""
    rng = random.Random(20240531)
    kills = 5
    killed = []
    stop = threading.Event()

    def killer():
        time.sleep(0.3)
        while len(killed) < kills and not stop.is_set():
            # Only workers that have been up a while: a worker killed before
            # it is ready counts towards the crash-loop limit.
            ready = fh.wait_for_workers(2, timeout=5, min_age=0.25)
            victims = [p for p in ready if p.pid not in killed]
            if victims:
                victim = rng.choice(victims)
                try:
                    victim.kill()
                    killed.append(victim.pid)
                except psutil.Error:
                    pass
            stop.wait(rng.uniform(0.3, 0.6))

    start = time.monotonic()
    with fh.guarded(ferropool.Pool(2)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            applied = [pool.apply_async(fh.soak_task, (i,)) for i in range(200)]
            ordered = fh.drain(pool.imap(fh.soak_task, range(200, 400)))
            unordered = fh.drain(pool.imap_unordered(fh.soak_task, range(400, 600)))
            outcomes = [fh.outcome_of(r.get, 60) for r in applied]
            thread.join(timeout=30)
        finally:
            stop.set()
        tracker.observe()
        elapsed = time.monotonic() - start
        assert len(killed) == kills, "the soak test did not kill as often as planned"

        # Every task is accounted for: its own correct result, or WorkerLostError.
        lost = [o for o in outcomes + ordered + unordered if isinstance(o, BaseException)]
        assert all(type(o) is WorkerLostError for o in lost), lost
        assert len(lost) <= kills
        for i, o in enumerate(outcomes):
            assert isinstance(o, WorkerLostError) or o == (i, i * i)
        assert len(ordered) == 200
        for i, o in zip(range(200, 400), ordered):
            assert isinstance(o, WorkerLostError) or o == (i, i * i)
        assert len(unordered) == 200
        done = sorted(o for o in unordered if not isinstance(o, BaseException))
        assert all(v == i * i for i, v in done)
        assert len({i for i, _ in done}) == len(done)
        assert {i for i, _ in done} <= set(range(400, 600))
        lost_pids = {int(m) for o in lost for m in re.findall(r"\d+", str(o))}
        assert lost_pids & set(killed) or not lost

        # Healthy afterwards.
        assert pool.map(fh.square, range(100), chunksize=3) == [i * i for i in range(100)]
        assert len(fh.wait_for_workers(2)) == 2
    print(f"\nsoak: 600 tasks, {kills} kills, {len(lost)} lost, {elapsed:.2f} s")
    tracker.assert_clean()
