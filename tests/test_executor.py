"""ferropool.ProcessPoolExecutor: the API of concurrent.futures.ProcessPoolExecutor
(Python 3.14's, on every supported Python), on ferropool's engine."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import concurrent.futures.process
import multiprocessing
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import ferropool
import pytest
from _exec_helpers import (
    ReadCounter,
    cube,
    die_on,
    failing_initializer,
    greeting,
    mark_then_sleep,
    mul,
    pid_of_worker,
    return_a_lock,
    set_greeting,
    slow_square,
)
from _helpers import raise_value_error, square
from _support import METHODS
from ferropool import ProcessPoolExecutor, WorkerLostError


@pytest.fixture(params=METHODS)
def executor(request):
    ex = ProcessPoolExecutor(2, mp_context=ferropool.get_context(request.param))
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def fexecutor():
    """Default start method: for behaviour that does not depend on it."""
    ex = ProcessPoolExecutor(2)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


def test_is_an_executor_and_returns_real_futures(executor):
    assert isinstance(executor, cf.Executor)
    future = executor.submit(square, 7)
    assert isinstance(future, cf.Future)
    assert future.result(timeout=30) == 49


def test_submit_passes_args_and_kwargs(executor):
    assert executor.submit(mul, 6, b=7).result(timeout=30) == 42


def test_exception_is_reraised_with_remote_traceback(executor):
    future = executor.submit(raise_value_error, "broken input")
    exc = future.exception(timeout=30)
    assert type(exc) is ValueError and str(exc) == "broken input"
    # The stdlib executor's own class for the worker's traceback.
    assert type(exc.__cause__) is concurrent.futures.process._RemoteTraceback
    assert "raise_value_error" in str(exc.__cause__)
    with pytest.raises(ValueError, match="broken input"):
        future.result()


def test_stdlib_context_is_accepted(method=METHODS[1]):
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as ex:
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_as_completed_yields_in_completion_order(xexecutor):
    slow = xexecutor.submit(slow_square, 3, 0.6)
    fast = xexecutor.submit(slow_square, 2, 0.0)
    order = list(cf.as_completed([slow, fast], timeout=30))
    assert order == [fast, slow]
    assert [f.result() for f in order] == [4, 9]


def test_wait_first_completed_and_first_exception(xexecutor):
    slow = xexecutor.submit(slow_square, 3, 0.8)
    fast = xexecutor.submit(slow_square, 2, 0.0)
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    bad = xexecutor.submit(raise_value_error, "first")
    slow2 = xexecutor.submit(slow_square, 4, 0.8)
    done, _ = cf.wait([bad, slow2], timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert bad in done
    assert slow.result(timeout=30) == 9 and slow2.result(timeout=30) == 16


def test_pending_futures_can_be_cancelled(xexecutor):
    futures = [xexecutor.submit(slow_square, i, 0.3) for i in range(12)]
    cancelled = [f for f in futures if f.cancel()]
    # Only a couple of tasks per worker are handed out; the rest wait, cancellable.
    assert len(cancelled) >= 6
    for f in cancelled:
        assert f.cancelled()
        with pytest.raises(cf.CancelledError):
            f.result()
    for f in futures:
        if f not in cancelled:
            assert f.result(timeout=30) == futures.index(f) ** 2


def test_shutdown_cancel_futures_cancels_pending_work():
    ex = ProcessPoolExecutor(2)
    futures = [ex.submit(slow_square, i, 0.3) for i in range(12)]
    ex.shutdown(wait=True, cancel_futures=True)
    states = [f.cancelled() for f in futures]
    assert any(states), "nothing was cancelled"
    for f in futures:
        assert f.done()
        if not f.cancelled():
            assert f.result() == futures.index(f) ** 2


def test_shutdown_without_wait_returns_at_once_and_work_still_finishes():
    ex = ProcessPoolExecutor(2)
    futures = [ex.submit(slow_square, i, 0.4) for i in range(4)]
    t0 = time.monotonic()
    ex.shutdown(wait=False)
    assert time.monotonic() - t0 < 0.3, "shutdown(wait=False) blocked"
    assert [f.result(timeout=30) for f in futures] == [0, 1, 4, 9]


def test_submit_after_shutdown_raises(xexecutor):
    xexecutor.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        xexecutor.submit(square, 1)


def test_context_manager_waits_for_work():
    with ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(slow_square, i, 0.1) for i in range(4)]
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [0, 1, 4, 9]


def test_map_in_order_with_chunksize(executor):
    assert list(executor.map(square, range(25), chunksize=4)) == [i * i for i in range(25)]
    assert list(executor.map(mul, range(5), range(5, 10))) == [0, 6, 14, 24, 36]
    assert list(executor.map(square, [])) == []


def test_map_bad_chunksize_and_buffersize(xexecutor):
    with pytest.raises(ValueError):
        xexecutor.map(square, range(3), chunksize=0)
    with pytest.raises(ValueError):
        xexecutor.map(square, range(3), buffersize=0)
    with pytest.raises(TypeError):
        xexecutor.map(square, range(3), buffersize=1.5)


def test_map_timeout_raises_and_cancels_the_rest(xexecutor):
    results = xexecutor.map(slow_square, [1, 2, 3, 4], [2.0] * 4, timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        list(results)


def test_map_exception_surfaces_at_its_position(xexecutor):
    results = xexecutor.map(raise_value_error, ["a"])
    with pytest.raises(ValueError, match="a"):
        next(results)


def test_map_with_buffersize_reads_input_lazily(fexecutor):
    source = ReadCounter(10_000)
    results = fexecutor.map(cube, source, buffersize=4, chunksize=2)
    first = [next(results) for _ in range(3)]
    assert first == [0, 1, 8]
    # 4 chunks ahead of the one being consumed, 2 items each, plus slack.
    assert source.taken <= 2 * (4 + 2)
    assert sum(1 for _ in results) == 10_000 - 3
    assert source.taken == 10_000


def test_map_without_buffersize_submits_everything_like_the_stdlib(fexecutor):
    source = ReadCounter(50)
    results = fexecutor.map(cube, source)
    assert source.taken == 50
    assert list(results)[-1] == 49**3


def test_map_stopped_early_cancels_the_chunks_not_yet_sent(xexecutor, tmp_path):
    results = xexecutor.map(mark_then_sleep, [str(tmp_path)] * 100, range(100))
    assert [next(results), next(results)] == [0, 1]
    results.close()  # the consumer gives up: unsent chunks are cancelled
    xexecutor.shutdown(wait=True)
    ran = len(list(tmp_path.iterdir()))
    # The two consumed, and at most a few sent to the workers meanwhile.
    assert 2 <= ran <= 12, f"{ran} of 100 tasks ran after the consumer stopped at 2"


def test_shutdown_cancel_futures_cancels_the_unsent_chunks_of_a_map(tmp_path):
    ex = ProcessPoolExecutor(2)
    results = ex.map(mark_then_sleep, [str(tmp_path)] * 60, range(60))
    assert next(results) == 0
    ex.shutdown(wait=True, cancel_futures=True)
    got = []
    with pytest.raises(cf.CancelledError):
        for value in results:
            got.append(value)
    assert got == list(range(1, 1 + len(got))), "results before the cancelled chunk, in order"
    assert len(list(tmp_path.iterdir())) < 60


def test_lazy_map_ends_with_the_stdlib_error_after_shutdown():
    ex = ProcessPoolExecutor(2)
    source = ReadCounter(1000)
    results = ex.map(cube, source, buffersize=2)
    assert next(results) == 0
    ex.shutdown(wait=True)  # must not wait for the rest of the input
    got = []
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        for value in results:
            got.append(value)
    assert got == [i**3 for i in range(1, 1 + len(got))]
    assert source.taken < 10


def test_map_of_an_unpicklable_function_fails_at_the_first_result(xexecutor):
    lock = threading.Lock()  # not even cloudpickle sends the lambda
    results = xexecutor.map(lambda x: lock and x, [1, 2])
    with pytest.raises(Exception, match="lambda"):
        next(results)
    assert xexecutor.submit(square, 3).result(timeout=30) == 9


def test_initializer_and_initargs(method):
    ctx = ferropool.get_context(method)
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=set_greeting, initargs=("hi",)) as ex:
        assert set(ex.map(greeting, range(6))) == {"hi"}


def test_failing_initializer_breaks_the_executor(method):
    ctx = ferropool.get_context(method)
    ex = ProcessPoolExecutor(2, mp_context=ctx, initializer=failing_initializer)
    try:
        # As the stdlib's: submit() itself raises once the pool is known to
        # be broken, and the future raises if it broke after the submit.
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 3).result(timeout=30)
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 4).result(timeout=30)
    finally:
        ex.shutdown(wait=True)


def test_max_tasks_per_child_replaces_workers(method):
    ctx = ferropool.get_context(method)
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=2) as ex:
        pids = [ex.submit(pid_of_worker).result(timeout=30) for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_asyncio_run_in_executor_and_wrap_future(xexecutor):
    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(xexecutor, square, 12)
        b = await asyncio.wrap_future(xexecutor.submit(cube, 3))
        many = await asyncio.gather(*(loop.run_in_executor(xexecutor, square, i) for i in range(8)))
        return a, b, many

    assert asyncio.run(main()) == (144, 27, [i * i for i in range(8)])


def test_done_callbacks_run(xexecutor):
    seen = []
    done = threading.Event()

    def callback(f):
        seen.append(f.result())
        done.set()

    xexecutor.submit(square, 9).add_done_callback(callback)
    assert done.wait(30)
    assert seen == [81]


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_worker_death_fails_only_its_future(executor, how):
    futures = [executor.submit(die_on, i, 3, how) for i in range(8)]
    outcomes = []
    for f in futures:
        try:
            outcomes.append(f.result(timeout=30))
        except WorkerLostError as e:
            outcomes.append(e)
    lost = [o for o in outcomes if isinstance(o, WorkerLostError)]
    assert len(lost) == 1 and outcomes[3] is lost[0]
    assert isinstance(lost[0], BrokenProcessPool)
    message = str(lost[0])
    assert "worker process" in message
    assert ("code 3" in message) if how == "exit" else ("SIGKILL" in message)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    # The executor keeps working.
    assert executor.submit(square, 5).result(timeout=30) == 25


def test_terminate_and_kill_workers_stop_everything():
    for stop in ("terminate_workers", "kill_workers"):
        ex = ProcessPoolExecutor(2)
        futures = [ex.submit(slow_square, i, 5.0) for i in range(6)]
        time.sleep(0.3)
        getattr(ex, stop)()
        for f in futures:
            assert f.cancelled() or isinstance(f.exception(timeout=30), BrokenProcessPool)
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError):
            ex.submit(square, 1)


def test_bad_input():
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ProcessPoolExecutor(0)
    with pytest.raises(ValueError):
        ProcessPoolExecutor(-1)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ProcessPoolExecutor(1, initializer=5)
    with pytest.raises(ValueError):
        ProcessPoolExecutor(1, max_tasks_per_child=0)


def test_non_callable_and_unpicklable_arguments(xexecutor):
    with pytest.raises(TypeError, match="not callable"):
        xexecutor.submit(42)
    lock = threading.Lock()
    future = xexecutor.submit(square, lock)
    exc = future.exception(timeout=30)
    assert isinstance(exc, TypeError) and "lock" in str(exc)
    # An unpicklable result fails its own future too.
    assert xexecutor.submit(return_a_lock).exception(timeout=30) is not None
    assert xexecutor.submit(square, 6).result(timeout=30) == 36
