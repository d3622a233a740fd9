"""`Pool.stats()` and `ProcessPoolExecutor.stats()`: per-worker figures,
the workers that ended and why, and the totals."""

from __future__ import annotations

import os
import signal
import time

import _helpers as h
import ferropool
import pytest

pytestmark = pytest.mark.timeout(60)


def _wait(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_tasks_time_and_bytes_are_counted(make_pool):
    pool = make_pool(2)
    assert pool.map(h.square, range(50), chunksize=1) == [x * x for x in range(50)]
    results = pool.map(bytes, [200_000] * 3, chunksize=1)
    assert [len(r) for r in results] == [200_000] * 3
    pool.map(h.sleep_then, [0.2] * 4, chunksize=1)
    stats = pool.stats()
    assert stats.tasks_done == 50 + 3 + 4
    assert sum(w.tasks_done for w in stats.workers) == stats.tasks_done
    assert stats.busy_seconds >= 0.7, stats  # four sleeps of 0.2 s
    assert stats.bytes_received >= 3 * 200_000
    assert stats.bytes_sent > 0
    assert {w.pid for w in stats.workers} == {p.pid for p in pool._pool}
    assert all(w.state == "ready" and w.age_seconds > 0 for w in stats.workers)
    assert stats.workers_started == 2 and stats.workers_ended == 0 and not stats.ended
    text = repr(stats)
    assert text.startswith("PoolStats(2 workers: 57 tasks")
    assert f"pid {stats.workers[0].pid} ready" in text


def test_a_killed_worker_is_listed_with_why(fpool):
    fpool.map(h.square, range(10))
    victim = fpool._pool[0].pid
    os.kill(victim, signal.SIGKILL)
    assert _wait(lambda: any(e.pid == victim for e in fpool.stats().ended))
    stats = fpool.stats()
    ended = next(e for e in stats.ended if e.pid == victim)
    assert ended.unexpected
    assert "killed by signal 9 (SIGKILL)" in ended.why
    assert stats.restarts == {ended.why: 1}
    assert stats.unexpected_deaths == 1
    assert _wait(lambda: fpool.stats().workers_started == 3)


def test_retired_and_timed_out_workers_say_so():
    with ferropool.Pool(1, maxtasksperchild=2) as pool:
        pool.map(h.square, range(6), chunksize=1)
        assert _wait(lambda: pool.stats().workers_ended >= 2)
        stats = pool.stats()
        assert {e.why for e in stats.ended} == {"retired"}
        assert not any(e.unexpected for e in stats.ended)
        assert stats.restarts == {}
        assert all(e.tasks_done == 2 for e in stats.ended)
    with ferropool.Pool(1, task_timeout=0.3) as pool:
        with pytest.raises(ferropool.TaskTimeoutError):
            pool.apply(h.sleep_then, (30,))
        assert _wait(lambda: pool.stats().workers_ended == 1)
        assert pool.stats().ended[0].why == "ran past the task timeout"


def test_stats_after_the_pool_stopped():
    pool = ferropool.Pool(2)
    pool.map(h.square, range(8), chunksize=1)
    pool.terminate()
    stats = pool.stats()
    assert stats.workers == ()
    assert stats.tasks_done == 8
    assert stats.workers_ended == 2
    assert {e.why for e in stats.ended} == {"stopped with the pool"}


def test_executor_stats(method):
    ctx = ferropool.get_context(method)
    with ferropool.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(h.square, range(7))) == [x * x for x in range(7)]
        assert ex.submit(h.add, 1, 2).result() == 3
        stats = ex.stats()
        assert stats.tasks_done == 8
        assert len(stats.workers) == 2
    assert ex.stats().workers_ended == 2
