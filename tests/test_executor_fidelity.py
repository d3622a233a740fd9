"""What CPython's own executor tests ask of a ProcessPoolExecutor, checked
here under every start method (and the same cases on Pool where they apply):
no hang at shutdown after a crash, nothing escapes the thread that settles
futures, executors and pools that nobody closed are collected and leave
nothing behind, the stdlib executor's exception types, and no new work once
the interpreter exits. `make conformance` runs CPython's tests themselves."""

from __future__ import annotations

import gc
import os
import pickle
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool

import _fidelity_helpers as fx
import ferropool
import pytest
from _support import METHODS, descendants, run_script, wait_gone
from ferropool import TaskTransferError


def make_executor(method, workers=2, **kwargs):
    return ferropool.ProcessPoolExecutor(
        workers, mp_context=ferropool.get_context(method), **kwargs
    )


def make_pool(method, workers=2):
    return ferropool.get_context(method).Pool(workers)


# ----- 1. shutdown right after a crash -----------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_shutdown_right_after_a_crash_returns(method):
    """CPython's test_shutdown_deadlock: a task that segfaults 0.1 s after
    submit, shutdown(wait=True) at once. The race that hung it (the
    replacement worker ready before the lost task's job completed, so
    nothing woke the engine to retire the idle workers) shows about once in
    fifty tries: repeat."""
    for _ in range(30):
        with make_executor(method) as ex:
            future = ex.submit(fx.crash, 0.1)
            ex.shutdown(wait=True)
            with pytest.raises(BrokenProcessPool):
                future.result(timeout=0)


# ----- 2. BaseException while unpickling in the parent ---------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_exit_while_unpickling_a_result_fails_that_future_only(method):
    with make_executor(method) as ex:
        bad = ex.submit(fx.return_instance, fx.ExitAtUnpickle)
        exc = bad.exception(timeout=30)
        assert isinstance(exc, TaskTransferError) and isinstance(exc, BrokenProcessPool)
        assert isinstance(exc.__cause__, SystemExit)
        assert "could not be unpickled in the parent" in str(exc)
        # The thread that settles futures lived through it.
        assert ex.submit(fx.identity, 5).result(timeout=30) == 5
        raised = ex.submit(fx.raise_exit_at_unpickle).exception(timeout=30)
        assert isinstance(raised, TaskTransferError)
        assert "RaisesExitAtUnpickle" in str(raised)
        assert isinstance(raised.__cause__, SystemExit)
        assert list(ex.map(fx.identity, range(4))) == [0, 1, 2, 3]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_pool_exit_while_unpickling_fails_that_task_only(method):
    with make_pool(method) as pool:
        with pytest.raises(TaskTransferError) as info:
            pool.apply(fx.return_instance, (fx.ExitAtUnpickle,))
        assert isinstance(info.value.__cause__, SystemExit)
        with pytest.raises(TaskTransferError):
            pool.apply(fx.raise_exit_at_unpickle)
        # A callback's result: the service thread that runs callbacks survives.
        errors = []
        res = pool.apply_async(
            fx.return_instance, (fx.ExitAtUnpickle,), error_callback=errors.append
        )
        with pytest.raises(TaskTransferError):
            res.get(timeout=30)
        assert len(errors) == 1 and isinstance(errors[0], TaskTransferError)
        assert pool.map(fx.identity, range(5)) == [0, 1, 2, 3, 4]


# ----- 3. collected executors and pools, references ------------------------------


def _process_state():
    """Threads, file descriptors and live children of this process."""
    tasks = set(os.listdir("/proc/self/task"))
    fds = set(os.listdir("/proc/self/fd"))
    children = {p.pid for p in descendants()}
    return tasks, fds, children


def _assert_back_to(before, timeout=10.0):
    """Polls (a hang guard, not a speed bound) until the process has no
    thread, fd or child process more than in `before`."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        tasks, fds, children = _process_state()
        extra = (tasks - before[0], fds - before[1], children - before[2])
        if not any(extra) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    new_children = [p for p in descendants() if p.pid in extra[2]]
    assert wait_gone(new_children, 0) == [], f"workers left: {new_children}"
    assert extra[0] == set(), f"threads left: {extra[0]}"
    assert extra[1] == set(), f"file descriptors left: {extra[1]}"


def _warm_up(method):
    """Starts what outlives any one pool (the fork server, the stdlib's
    helpers), so that what a pool leaves behind can be counted."""
    with make_executor(method, 1) as ex:
        ex.submit(fx.identity, 1).result(timeout=30)
    with make_pool(method, 1) as pool:
        pool.apply(fx.identity, (1,))
    gc.collect()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_dropped_executor_is_collected_and_finishes_its_work(method):
    _warm_up(method)
    before = _process_state()
    ex = make_executor(method)
    results = ex.map(abs, range(-5, 5))
    futures = [ex.submit(fx.identity, i) for i in range(20)]
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None, "the executor is still referenced"
    # As the stdlib's at garbage collection: the work already given runs.
    assert list(results) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert [f.result(timeout=30) for f in futures] == list(range(20))
    del results, futures
    _assert_back_to(before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_dropped_pool_is_collected_and_leaves_nothing(method):
    _warm_up(method)
    before = _process_state()
    pool = make_pool(method)
    assert pool.map(fx.identity, range(4)) == [0, 1, 2, 3]
    ref = weakref.ref(pool)
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del pool
        gc.collect()
    assert ref() is None
    _assert_back_to(before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["Pool", "ProcessPoolExecutor"])
def test_interrupted_constructor_leaves_nothing(method, kind, monkeypatch):
    """Ctrl-C while the first workers start (in `wait_first`): the engine,
    its thread and its workers do not outlive the failed constructor."""
    from ferropool import _launch

    _warm_up(method)
    before = _process_state()
    real = _launch.start_engine

    def interrupted(*args, **kwargs):
        running = real(*args, **kwargs)

        def wait_first():
            raise KeyboardInterrupt

        running.wait_first = wait_first
        return running

    monkeypatch.setattr(_launch, "start_engine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        if kind == "Pool":
            make_pool(method)
        else:
            make_executor(method)
    _assert_back_to(before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_dropped_engine_handle_stops_its_workers(method):
    """The engine stops itself when its last handle goes, even with no
    owner and no service thread ever made."""
    from ferropool import _launch

    _warm_up(method)
    before = _process_state()
    running = _launch.start_engine(method, 2, None, (), None)
    running.wait_first()
    deadline = time.monotonic() + 30
    while len(running.engine.status()[2]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = running.engine.status()[2]
    assert len(pids) == 2
    reap = running.reap
    del running
    gc.collect()
    reap()
    _assert_back_to(before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_finished_call_keeps_no_reference_to_its_callable(method):
    """CPython's test_no_stale_references: once `submit(obj.method)` is done
    (its future discarded), `obj` can be collected."""
    with make_executor(method) as ex:
        holder = fx.Holder()
        collected = threading.Event()
        ref = weakref.ref(holder, lambda _: collected.set())
        assert ex.submit(holder.method).result(timeout=30) == 42
        ex.submit(holder.method)
        del holder
        deadline = time.monotonic() + 30
        while not collected.is_set() and time.monotonic() < deadline:
            gc.collect()
            collected.wait(0.05)
        assert ref() is None
        # The function's stream is gone; calls of a new one still work.
        assert ex.submit(fx.Holder().method).result(timeout=30) == 42


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_map_iterator_does_not_keep_yielded_results(method):
    """CPython's test_free_reference."""
    with make_executor(method) as ex:
        for obj in ex.map(fx.make_payload, range(10)):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None


# ----- 4. SystemExit inside an executor's task ------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_executor_sys_exit_in_a_task_is_that_futures_exception(method):
    with make_executor(method, 1) as ex:
        pid = ex.submit(fx.pid_of_worker).result(timeout=30)
        exc = ex.submit(fx.exit_with, 7).exception(timeout=30)
        assert type(exc) is SystemExit and exc.code == 7
        exc = ex.submit(fx.return_instance, fx.ExitAtPickle).exception(timeout=30)
        assert type(exc) is SystemExit and exc.code == 3
        # The worker carried on, as the stdlib executor's does.
        assert ex.submit(fx.pid_of_worker).result(timeout=30) == pid


# ----- 5. the stdlib executor's error types ------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_executor_error_types(method):
    with make_executor(method) as ex:
        # A result that cannot be pickled: the pickling error itself.
        exc = ex.submit(fx.return_instance, fx.ErrorAtPickle).exception(timeout=30)
        assert type(exc) is pickle.PicklingError and "refused to pickle" in str(exc)
        # Arguments that cannot be unpickled in the worker.
        exc = ex.submit(fx.identity, fx.ErrorAtUnpickle()).exception(timeout=30)
        assert isinstance(exc, TaskTransferError) and isinstance(exc, BrokenProcessPool)
        assert type(exc.__cause__) is pickle.UnpicklingError
        assert "arguments could not be unpickled in the worker" in str(exc)
        assert "refused to unpickle" in str(exc)
        exc = ex.submit(fx.identity, fx.ExitAtUnpickle()).exception(timeout=30)
        assert isinstance(exc, TaskTransferError) and type(exc.__cause__) is SystemExit
        # A result that cannot be unpickled in the parent.
        exc = ex.submit(fx.return_instance, fx.ErrorAtUnpickle).exception(timeout=30)
        assert isinstance(exc, TaskTransferError) and isinstance(exc, BrokenProcessPool)
        assert type(exc.__cause__) is pickle.UnpicklingError
        assert "result could not be unpickled in the parent" in str(exc)
        # Each failed only its own future.
        assert ex.submit(fx.identity, 9).result(timeout=30) == 9


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_pool_same_cases(method):
    """The same cases on Pool: MaybeEncodingError for a result that cannot
    be pickled (as the stdlib's Pool), TaskTransferError where data cannot
    be unpickled (the stdlib's Pool hangs or loses the worker there)."""
    from multiprocessing.pool import MaybeEncodingError

    with make_pool(method) as pool:
        with pytest.raises(MaybeEncodingError):
            pool.apply(fx.return_instance, (fx.ErrorAtPickle,))
        with pytest.raises(TaskTransferError) as info:
            pool.apply(fx.identity, (fx.ErrorAtUnpickle(),))
        assert type(info.value.__cause__) is pickle.UnpicklingError
        with pytest.raises(TaskTransferError):
            pool.map(fx.identity, [1, fx.ErrorAtUnpickle(), 3], chunksize=1)
        with pytest.raises(TaskTransferError) as info:
            pool.apply(fx.return_instance, (fx.ErrorAtUnpickle,))
        assert type(info.value.__cause__) is pickle.UnpicklingError
        assert pool.map(fx.identity, range(3)) == [0, 1, 2]


# ----- 6. submit while the interpreter exits -------------------------------------

SUBMIT_AT_EXIT = """
import atexit, sys
import ferropool
import _fidelity_helpers as fx

@atexit.register
def run_last():
    try:
        ex.submit(fx.identity, 1)
    except RuntimeError as e:
        print("refused:", e)

if __name__ == "__main__":
    ex = ferropool.ProcessPoolExecutor(2, mp_context=ferropool.get_context(sys.argv[1]))
    print(ex.submit(fx.identity, 42).result(timeout=30))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_submit_from_an_atexit_hook_is_refused(method, tmp_path):
    done = run_script(tmp_path, SUBMIT_AT_EXIT, method)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "42"
    assert lines[1] == "refused: cannot schedule new futures after interpreter shutdown"
