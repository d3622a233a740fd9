"""Fault injection: workers that die (SIGKILL as the OOM killer sends it,
a segfault in C code, os._exit, sys.exit), crash loops, per-task
timeouts, and workers ignoring SIGINT. Each test checks the right exception
on exactly the affected task, the other results, that the pool still
works, and that no process is left behind.

Shared helpers: _fault_cases.py and _fault_helpers.py; faults that need a
separate parent process are in test_faults_process.py. Time limits are
hang guards, never speed requirements."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import signal
import threading
import time

import _fault_helpers as fh
import _helpers as h
import ferropool
import psutil
import pytest
from _fault_cases import (
    assert_replaced,
    assert_worker_lost,
    inject,
    make_executor,
    make_pool,
)
from _support import METHODS
from ferropool import (
    BrokenProcessPool,
    ProcessPoolExecutor,
    TaskTimeoutError,
    WorkerLostError,
)

# ============================================================================
# 1. A worker dies while running a task
# ============================================================================


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["sigkill", "segfault", "os_exit", "sys_exit"])
@pytest.mark.parametrize("method", METHODS)
def test_worker_death_fails_only_its_task(tmp_path, tracker, method, how):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(make_pool(method)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        before = [pool.apply_async(fh.sleep_square, (i, 0.05)) for i in range(4)]
        doomed = pool.apply_async(fh.die, (how, str(pidfile)))
        after = [pool.apply_async(fh.sleep_square, (i, 0.05)) for i in range(4, 10)]
        pid = inject(how, pidfile)
        tracker.observe()
        exc = fh.outcome_of(doomed.get, 30)
        assert_worker_lost(exc, how, pid)
        assert [r.get(timeout=30) for r in before + after] == [i * i for i in range(10)]
        assert_replaced(pid)
        # The pool keeps working, on both workers.
        assert pool.map(fh.square, range(20), chunksize=1) == [i * i for i in range(20)]
        assert pool.apply(fh.square, (7,)) == 49
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.parametrize("method", METHODS)
def test_death_is_detected_without_waiting_for_anything(tmp_path, method):
    """A worker SIGKILLed in the middle of a 60-second task: its task fails
    at once (by the socket closing), not when the task would have ended or a
    poll comes round. Bounded generously: a hang guard, not a speed test."""
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(make_pool(method)) as pool:
        res = pool.apply_async(fh.die, ("sigkill", str(pidfile)))
        pid = fh.read_pid(pidfile)
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            res.get(timeout=10)
        assert time.monotonic() - start < 10


@pytest.mark.parametrize("method", METHODS)
def test_prefetched_tasks_go_back_to_the_queue(tmp_path, tracker, method):
    """One worker: whatever it had taken ahead of the task it was running
    when it died runs in its replacement; only the running task fails."""
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(make_pool(method, 1)) as pool:
        # Short tasks first, so that the pool hands this worker work ahead.
        assert pool.map(fh.square, range(50), chunksize=1) == [i * i for i in range(50)]
        doomed = pool.apply_async(fh.die, ("sigkill", str(pidfile)))
        rest = [pool.apply_async(fh.pid_square, (i,)) for i in range(10)]
        pid = inject("sigkill", pidfile)
        tracker.observe()
        assert_worker_lost(fh.outcome_of(doomed.get, 30), "sigkill", pid)
        results = [r.get(timeout=30) for r in rest]
        assert [value for _, value in results] == [i * i for i in range(10)]
        assert pid not in {p for p, _ in results}
        assert_replaced(pid, count=1)
    tracker.assert_clean()


@pytest.mark.parametrize("how", ["self_sigkill", "os_exit"])
def test_map_raises_worker_lost_error(tmp_path, tracker, how):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(ferropool.Pool(2)) as pool:
        with pytest.raises(WorkerLostError) as info:
            pool.starmap(fh.die_on, [(i, 5, str(pidfile), how) for i in range(8)], chunksize=1)
        assert_worker_lost(info.value, how, fh.read_pid(pidfile))
        pidfile.unlink()
        res = pool.starmap_async(fh.die_on, [(i, 3, str(pidfile), how) for i in range(12)], 2)
        exc = fh.outcome_of(res.get, 30)
        assert_worker_lost(exc, how, fh.read_pid(pidfile))
        assert res.ready() and not res.successful()
        assert pool.map(fh.square, range(10)) == [i * i for i in range(10)]
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.parametrize("method", METHODS)
def test_imap_lost_item_raises_at_its_position(tmp_path, tracker, method):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(make_pool(method)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        items = [(i, 4, str(pidfile), "os_exit") for i in range(10)]
        out = fh.drain(pool.imap(_die_on_star, items))
        assert len(out) == 10
        assert_worker_lost(out[4], "os_exit", fh.read_pid(pidfile))
        assert out[:4] + out[5:] == [i * i for i in range(10) if i != 4]
        tracker.observe()
    tracker.assert_clean()


def _die_on_star(args):
    return fh.die_on(*args)


def test_imap_unordered_lost_item_raises_once_and_the_rest_arrive(tmp_path, tracker):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(ferropool.Pool(2)) as pool:
        items = [(i, 6, str(pidfile), "self_sigkill") for i in range(12)]
        out = fh.drain(pool.imap_unordered(_die_on_star, items))
        errors = [o for o in out if isinstance(o, Exception)]
        assert len(errors) == 1, out
        assert_worker_lost(errors[0], "self_sigkill", fh.read_pid(pidfile))
        assert sorted(o for o in out if not isinstance(o, Exception)) == [
            i * i for i in range(12) if i != 6
        ]
        assert sorted(pool.imap_unordered(fh.square, range(6))) == [0, 1, 4, 9, 16, 25]
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_only_the_dying_task_fails_and_it_runs_once(tmp_path, ordered):
    """Repeated, because the window is small: a worker finishes a task,
    takes the next one (which kills it) and dies before the pool has read
    the finished task's result. That finished task must keep its result,
    the task that was running when the worker died must fail, and must not
    be run again elsewhere (it would kill a second worker)."""
    trials, n, bad = 30, 8, 5
    problems = []
    for trial in range(trials):
        directory = tmp_path / f"trial{trial}"
        directory.mkdir()
        items = [(i, bad, str(directory)) for i in range(n)]
        # A pool per trial: one pool would soon reach the crash-loop limit.
        with fh.guarded(ferropool.Pool(2)) as pool:
            imap = pool.imap if ordered else pool.imap_unordered
            out = fh.drain(imap(fh.record_run_then_maybe_die, items))
            errors = [o for o in out if isinstance(o, Exception)]
            values = sorted(o for o in out if not isinstance(o, Exception))
            runs = fh.runs_of(str(directory), bad)
            ok = (
                len(out) == n
                and len(errors) == 1
                and type(errors[0]) is WorkerLostError
                and values == [i * i for i in range(n) if i != bad]
                and (not ordered or isinstance(out[bad], WorkerLostError))
                and len(runs) == 1
                and runs[0] in str(errors[0])
            )
            if not ok:
                problems.append(
                    f"trial {trial}: item {bad} ran in {runs}; outcomes "
                    f"{[o if not isinstance(o, Exception) else repr(o)[:90] for o in out]}"
                )
    assert problems == [], f"{len(problems)} of {trials} trials went wrong:\n" + "\n".join(
        problems[:5]
    )


def test_error_callback_gets_worker_lost_error(tmp_path):
    pidfile = tmp_path / "doomed.pid"
    errors, values = [], []
    with fh.guarded(ferropool.Pool(2)) as pool:
        res = pool.apply_async(
            fh.die, ("segfault", str(pidfile)), callback=values.append, error_callback=errors.append
        )
        with pytest.raises(WorkerLostError):
            res.get(timeout=30)
        assert values == [] and len(errors) == 1
        assert_worker_lost(errors[0], "segfault", fh.read_pid(pidfile))


def test_idle_worker_killed_is_replaced_and_nothing_fails(tracker):
    with fh.guarded(ferropool.Pool(2)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        victims = fh.wait_for_workers(2)
        tracker.observe()
        os.kill(victims[0].pid, signal.SIGKILL)
        assert_replaced(victims[0].pid)
        assert pool.map(fh.square, range(10), chunksize=1) == [i * i for i in range(10)]
        tracker.observe()
    tracker.assert_clean()


# sys.exit() in an executor's task is not a death: as in the stdlib, the
# future raises SystemExit and the worker goes on (test_executor_fidelity).
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["sigkill", "segfault", "os_exit"])
@pytest.mark.parametrize("method", METHODS)
def test_executor_worker_death_fails_only_its_future(tmp_path, tracker, method, how):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(make_executor(method)) as ex:
        assert list(ex.map(fh.square, range(4))) == [0, 1, 4, 9]
        before = [ex.submit(fh.sleep_square, i, 0.05) for i in range(4)]
        doomed = ex.submit(fh.die, how, str(pidfile))
        after = [ex.submit(fh.sleep_square, i, 0.05) for i in range(4, 10)]
        pid = inject(how, pidfile)
        tracker.observe()
        assert_worker_lost(doomed.exception(timeout=30), how, pid)
        assert [f.result(timeout=30) for f in before + after] == [i * i for i in range(10)]
        assert_replaced(pid)
        assert ex.submit(fh.square, 8).result(timeout=30) == 64
        tracker.observe()
    tracker.assert_clean()


def test_executor_map_raises_at_the_lost_position(tmp_path, tracker):
    pidfile = tmp_path / "doomed.pid"
    with fh.guarded(ProcessPoolExecutor(2)) as ex:
        n = 10
        it = ex.map(fh.die_on, range(n), [5] * n, [str(pidfile)] * n, ["segfault"] * n)
        got = []
        with pytest.raises(WorkerLostError) as info:
            for value in it:
                got.append(value)
        assert got == [i * i for i in range(5)]
        assert_worker_lost(info.value, "segfault", fh.read_pid(pidfile))
        assert list(ex.map(fh.square, range(6), chunksize=2)) == [0, 1, 4, 9, 16, 25]
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_a_worker_dying_once_its_result_is_sent_loses_nothing(tracker, method):
    # As the stdlib's worker, ferropool's frees a task's result only after
    # sending it: a finalizer that ends the worker (here os._exit) comes too
    # late to lose the result; the pool replaces the worker and goes on.
    with fh.guarded(make_pool(method)) as pool:
        for i in range(3):
            result = pool.apply_async(h.result_ending_its_worker, (i,)).get(timeout=30)
            assert result.value == i and result.made_in != os.getpid()
            assert_replaced(result.made_in)
        assert pool.map(fh.square, range(6), chunksize=3) == [0, 1, 4, 9, 16, 25]
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_task_sent_to_a_worker_dying_between_tasks_runs_elsewhere(tracker, method):
    # A task goes to a worker as soon as it is free. One that dies before
    # beginning it (here a finalizer ends it once the result before is sent)
    # has it run by another worker, as the stdlib's shared queue would: the
    # engine reads the worker's count of tasks begun (src/engine/tally.rs).
    # 8 deaths: under the crash-loop bound of 10 within 10 s.
    with fh.guarded(make_pool(method)) as pool:
        pending = [pool.apply_async(h.result_ending_its_worker, (i,)) for i in range(4)]
        assert [r.get(timeout=30).value for r in pending] == [0, 1, 2, 3]
        chunks = pool.map(h.result_ending_its_worker, range(4), chunksize=1)
        assert [r.value for r in chunks] == [0, 1, 2, 3]
        assert pool.map(fh.square, range(6), chunksize=3) == [0, 1, 4, 9, 16, 25]
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_an_executor_worker_dying_between_tasks_fails_no_future(tracker, method):
    with fh.guarded(make_executor(method)) as ex:
        futures = [ex.submit(h.result_ending_its_worker, i) for i in range(6)]
        assert [f.result(timeout=30).value for f in futures] == list(range(6))
        assert ex.submit(fh.square, 8).result(timeout=30) == 64
        tracker.observe()
    tracker.assert_clean()


def _open_files():
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            pass  # the descriptor that listed the directory, closed since
    return links


def _tally_mappings(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return [line for line in f if "ferropool-tally" in line]
    except FileNotFoundError:
        return None  # gone since it was listed


def _tallies_of_workers(count):
    """How many tally mappings each of `count` workers has, once each has
    mapped its own (a replacement maps it once the engine has its Ready)."""
    deadline = time.monotonic() + 15
    while True:
        counts = [len(_tally_mappings(w.pid) or ()) for w in fh.wait_for_workers(count)]
        if counts == [1] * count or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


@pytest.mark.parametrize("method", METHODS)
def test_every_ready_worker_has_its_own_tally_and_the_parent_keeps_no_descriptor(method):
    with fh.guarded(make_pool(method, 3)) as pool:
        # One worker replaced: one forked after the others had their tallies
        # must not share theirs.
        pool.apply(h.result_ending_its_worker, (0,))
        assert pool.map(fh.square, range(8), chunksize=1) == [i * i for i in range(8)]
        assert _tallies_of_workers(3) == [1, 1, 1]
        assert not [link for link in _open_files() if "ferropool-tally" in link]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_function_that_kills_the_worker_loading_it_fails_its_task_once(tracker, method):
    # Dying while loading the task's function is dying with the task: it
    # fails, as a task that crashes, rather than going round the workers.
    with fh.guarded(make_pool(method)) as pool:
        with pytest.raises(WorkerLostError, match="exited with code 7"):
            pool.apply_async(h.DiesWhenLoaded(), (1,)).get(timeout=30)
        assert pool.map(fh.square, range(6), chunksize=3) == [0, 1, 4, 9, 16, 25]
        assert len(pool.stats().ended) == 1
        tracker.observe()
    tracker.assert_clean()


# ============================================================================
# 2. Crash loops: the pool stops replacing workers and breaks
# ============================================================================


def _assert_plain_broken(exc):
    assert isinstance(exc, BrokenProcessPool), repr(exc)
    assert not isinstance(exc, WorkerLostError), repr(exc)
    assert str(exc), "BrokenProcessPool should say why"


def _assert_no_new_workers(directory=None, settle=1.0):
    """The pool stopped replacing workers: none runs, and (when the
    initializer counts starts in `directory`) none starts any more."""
    deadline = time.monotonic() + 5
    while fh.pool_workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fh.pool_workers() == [], "the broken pool still has workers"
    starts = fh.starts_recorded(directory) if directory else None
    time.sleep(settle)
    assert fh.pool_workers() == [], "the broken pool started workers again"
    if directory:
        assert fh.starts_recorded(directory) == starts, "the broken pool still starts workers"


def _assert_new_work_fails(pool):
    exc = fh.outcome_of(lambda: pool.apply_async(fh.square, (2,)).get(timeout=30))
    _assert_plain_broken(exc)
    exc = fh.outcome_of(lambda: pool.map(fh.square, range(4)))
    _assert_plain_broken(exc)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_failing_initializer_breaks_the_pool(tmp_path, tracker, method):
    with fh.guarded(
        make_pool(method, initializer=fh.init_count_then_fail, initargs=(str(tmp_path),))
    ) as pool:
        res = pool.apply_async(fh.square, (3,))
        exc = fh.outcome_of(res.get, 30)
        _assert_plain_broken(exc)
        assert re.search(r"initiali[sz]", str(exc)), str(exc)
        tracker.observe()
        _assert_no_new_workers(str(tmp_path))
        assert fh.starts_recorded(str(tmp_path)) <= 10
        _assert_new_work_fails(pool)
    tracker.assert_clean()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_initializer_failing_in_replacements_breaks_the_pool(tmp_path, tracker, method):
    """The first two workers start fine; every replacement dies in its
    initializer. Kill both: their tasks fail with WorkerLostError, the work
    waiting behind them with BrokenProcessPool; no endless respawn."""
    starts = tmp_path / "starts"
    starts.mkdir()
    kwargs = dict(initializer=fh.init_healthy_first, initargs=(str(starts), 2))
    with fh.guarded(make_pool(method, **kwargs)) as pool:
        assert pool.map(fh.square, range(8), chunksize=1) == [i * i for i in range(8)]
        # Both workers ready first, then one long task each (a task handed to
        # a worker while the other is still starting can wait behind it).
        assert len(fh.wait_ready(pool, 2)) == 2
        running, pids = [], []
        for name in ("a.pid", "b.pid"):
            running.append(pool.apply_async(fh.report_then_sleep, (str(tmp_path / name), 60)))
            pids.append(fh.read_pid(tmp_path / name))
        waiting = [pool.apply_async(fh.square, (i,)) for i in range(6)]
        tracker.observe()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid, res in zip(pids, running):
            assert_worker_lost(fh.outcome_of(res.get, 30), "sigkill", pid)
        for res in waiting:
            _assert_plain_broken(fh.outcome_of(res.get, 30))
        _assert_no_new_workers(str(starts))
        assert fh.starts_recorded(str(starts)) <= 12
        _assert_new_work_fails(pool)
        tracker.observe()
    tracker.assert_clean()


@pytest.mark.timeout(90)
def test_many_deaths_in_a_short_window_break_the_pool(tracker):
    """Every task kills its worker, so replacements die one after another
    (after they were ready). The pool must not respawn for ever: after a set
    number of deaths it breaks and fails the rest with BrokenProcessPool."""
    n = 200
    with fh.guarded(ferropool.Pool(2)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        results = [pool.apply_async(fh.exit_worker, (i,)) for i in range(n)]
        outcomes = [fh.outcome_of(r.get, 60) for r in results]
        tracker.observe()
        lost = [o for o in outcomes if type(o) is WorkerLostError]
        broken = [o for o in outcomes if type(o) is BrokenProcessPool]
        assert len(lost) + len(broken) == n, [
            o for o in outcomes if type(o) not in (WorkerLostError, BrokenProcessPool)
        ][:3]
        assert broken, f"all {n} tasks killed their worker and the pool kept replacing them"
        assert lost, "the first deaths should fail only their own tasks"
        assert len(lost) < n // 2
        _assert_plain_broken(broken[0])
        _assert_no_new_workers()
        _assert_new_work_fails(pool)
    tracker.assert_clean()


@pytest.mark.timeout(90)
def test_executor_many_deaths_in_a_short_window_break_it(tracker):
    n = 200
    with fh.guarded(ProcessPoolExecutor(2)) as ex:
        assert ex.submit(fh.square, 3).result(timeout=30) == 9
        futures = [ex.submit(fh.exit_worker, i) for i in range(n)]
        outcomes = [f.exception(timeout=60) for f in futures]
        tracker.observe()
        lost = [o for o in outcomes if type(o) is WorkerLostError]
        broken = [o for o in outcomes if type(o) is BrokenProcessPool]
        assert len(lost) + len(broken) == n
        assert broken, f"all {n} tasks killed their worker and the executor kept replacing them"
        assert lost and len(lost) < n // 2
        _assert_no_new_workers()
        with pytest.raises(BrokenProcessPool) as info:
            ex.submit(fh.square, 2).result(timeout=30)
        _assert_plain_broken(info.value)
    tracker.assert_clean()


@pytest.mark.timeout(90)
def test_workers_killed_as_soon_as_they_start_break_the_pool(tracker):
    """Something outside kills every worker the moment it appears (before or
    just after it is ready). The pool gives up instead of spinning."""
    stop = threading.Event()
    killed = set()

    def killer():
        while not stop.is_set():
            for p in fh.pool_workers():
                if p.pid not in killed:
                    killed.add(p.pid)
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
            time.sleep(0.005)

    with fh.guarded(ferropool.Pool(2)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        results = [pool.apply_async(fh.sleep_square, (i, 0.2)) for i in range(50)]
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            outcomes = [fh.outcome_of(r.get, 60) for r in results]
        finally:
            stop.set()
            thread.join()
        tracker.observe()
        for pid in killed:
            tracker.add(pid)
        assert all(isinstance(o, BrokenProcessPool) for o in outcomes), outcomes[:5]
        assert any(type(o) is BrokenProcessPool for o in outcomes), (
            "every task was lost one by one: the pool kept replacing workers"
        )
        assert len(killed) < 50
        _assert_no_new_workers()
        _assert_new_work_fails(pool)
    tracker.assert_clean()


# ============================================================================
# 3. Per-task timeouts
# ============================================================================


def _assert_timeout_error(exc):
    assert type(exc) is TaskTimeoutError, repr(exc)
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc, multiprocessing.TimeoutError)
    assert isinstance(exc, cf.TimeoutError)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_task_timeout_kills_the_worker_and_its_children(tmp_path, tracker, method):
    childfile = tmp_path / "child.pid"
    with fh.guarded(make_pool(method, task_timeout=1.0)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        slow = pool.apply_async(fh.spawn_child_then_sleep, (str(childfile), 60))
        others = [pool.apply_async(fh.sleep_square, (i, 0.05)) for i in range(10)]
        child = fh.read_pid(childfile)
        worker = psutil.Process(child).ppid()
        tracker.observe()
        tracker.add(child)
        _assert_timeout_error(fh.outcome_of(slow.get, 30))
        assert [r.get(timeout=30) for r in others] == [i * i for i in range(10)]
        assert fh.wait_pid_gone(child) is not None, "the task's child process survived"
        assert_replaced(worker)
        assert pool.map(fh.square, range(10), chunksize=1) == [i * i for i in range(10)]
        tracker.observe()
    tracker.assert_clean()


def test_task_timeout_in_map_and_imap(tracker):
    with fh.guarded(ferropool.Pool(2, task_timeout=1.0)) as pool:
        items = [(0.01, "a"), (60, "b"), (0.01, "c"), (0.01, "d")]
        with pytest.raises(TaskTimeoutError):
            pool.map(h.delayed, items, chunksize=1)
        out = fh.drain(pool.imap(h.delayed, items))
        assert out[0] == "a" and out[2:] == ["c", "d"]
        _assert_timeout_error(out[1])
        out = fh.drain(pool.imap_unordered(h.delayed, items))
        assert sorted(o for o in out if isinstance(o, str)) == ["a", "c", "d"]
        assert len([o for o in out if isinstance(o, TaskTimeoutError)]) == 1
        assert pool.map(fh.square, range(5)) == [0, 1, 4, 9, 16]
        tracker.observe()
    tracker.assert_clean()


def test_task_timeout_is_per_chunk():
    """Each item takes 0.6 s, under the 1.5 s limit; a chunk of three takes
    1.8 s, over it."""
    items = [(0.6, i) for i in range(3)]
    with fh.guarded(ferropool.Pool(2, task_timeout=1.5)) as pool:
        assert pool.map(h.delayed, items, chunksize=1) == [0, 1, 2]
        with pytest.raises(TaskTimeoutError):
            pool.map(h.delayed, items, chunksize=3)
        assert pool.map(fh.square, range(3)) == [0, 1, 4]


def test_task_timeout_counts_from_when_a_queued_task_starts():
    """One worker, three 0.6 s tasks under a 1 s limit: together they take
    1.8 s, but none of them runs past the limit (a task the worker took
    ahead of time must not be timed while it waits)."""
    with fh.guarded(ferropool.Pool(1, task_timeout=1.0)) as pool:
        assert pool.map(fh.square, range(20), chunksize=1) == [i * i for i in range(20)]
        results = [pool.apply_async(h.sleep_then, (0.6, i)) for i in range(3)]
        assert [r.get(timeout=30) for r in results] == [0, 1, 2]


def test_executor_task_timeout(tmp_path, tracker):
    pidfile = tmp_path / "slow.pid"
    with fh.guarded(ProcessPoolExecutor(2, task_timeout=1.0)) as ex:
        slow = ex.submit(fh.report_then_sleep, str(pidfile), 60, "late")
        others = [ex.submit(fh.sleep_square, i, 0.05) for i in range(8)]
        pid = fh.read_pid(pidfile)
        tracker.observe()
        _assert_timeout_error(slow.exception(timeout=30))
        with pytest.raises(TimeoutError):
            slow.result()
        assert [f.result(timeout=30) for f in others] == [i * i for i in range(8)]
        assert_replaced(pid)
        assert list(ex.map(fh.square, range(4))) == [0, 1, 4, 9]
        tracker.observe()
    tracker.assert_clean()


# ============================================================================
# 5. Workers ignore SIGINT (Ctrl-C to a program is in test_faults_process.py)
# ============================================================================


@pytest.mark.parametrize("method", METHODS)
def test_workers_ignore_sigint(tmp_path, method):
    pidfile = tmp_path / "busy.pid"
    with fh.guarded(make_pool(method)) as pool:
        assert pool.map(fh.square, range(4)) == [0, 1, 4, 9]
        res = pool.apply_async(fh.report_then_sleep, (str(pidfile), 1.0, "done"))
        busy = fh.read_pid(pidfile)
        for _ in range(3):
            os.kill(busy, signal.SIGINT)
            time.sleep(0.05)
        assert res.get(timeout=30) == "done"
        # Idle workers too: SIGINT changes nothing.
        workers = fh.wait_for_workers(2)
        for p in workers:
            os.kill(p.pid, signal.SIGINT)
        time.sleep(0.3)
        assert fh.still_running(workers) == workers
        assert pool.map(fh.square, range(10), chunksize=1) == [i * i for i in range(10)]
        assert {p.pid for p in fh.pool_workers()} == {p.pid for p in workers}


def test_executor_workers_ignore_sigint(tmp_path):
    pidfile = tmp_path / "busy.pid"
    with fh.guarded(ProcessPoolExecutor(2)) as ex:
        future = ex.submit(fh.report_then_sleep, str(pidfile), 1.0, "done")
        busy = fh.read_pid(pidfile)
        os.kill(busy, signal.SIGINT)
        assert future.result(timeout=30) == "done"
        assert fh.alive(busy)
