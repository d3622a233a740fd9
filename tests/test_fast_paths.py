"""The round trip's fast paths keep the stdlib's behaviour.

- An executor's future is settled by the thread waiting in `result()` when
  its outcome arrives (one hand-over fewer); done-callbacks still run in the
  executor's service thread, and nothing a waiter took is left unsettled,
  whether it waits to the end, times out or is interrupted.
- A module-level function's pickle is kept between calls, but it is checked
  as pickling checks it: a name that no longer leads to the function fails
  as it fails with the stdlib.
- A worker is told to drop a finished job's function with its next frames
  (no write of its own per job), or at once when the function's pickle is
  large: a worker never holds on to the functions of finished jobs.
"""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import threading

import _helpers
import ferropool
import pytest
from _exec_helpers import slow_square
from _helpers import square
from ferropool import ProcessPoolExecutor


@pytest.fixture
def executor():
    ex = ProcessPoolExecutor(2)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.mark.timeout(60)
def test_results_in_order_from_the_waiting_thread(executor):
    assert [executor.submit(square, i).result() for i in range(500)] == [
        i * i for i in range(500)
    ]
    futures = [executor.submit(square, i) for i in range(200)]
    assert [f.result() for f in reversed(futures)] == [i * i for i in reversed(range(200))]
    assert executor.submit(pow, 2, -1).exception() is None
    error = executor.submit(pow, 0, -1).exception()
    assert isinstance(error, ZeroDivisionError)


@pytest.mark.timeout(60)
def test_done_callbacks_run_in_the_service_thread_while_a_caller_waits(executor):
    ran_in = []
    done = threading.Event()

    def callback(future):
        ran_in.append((future.result(), threading.current_thread()))
        if len(ran_in) == 20:
            done.set()

    with_callbacks = []
    for i in range(20):
        with_callbacks.append(executor.submit(slow_square, i, 0.01))
        with_callbacks[-1].add_done_callback(callback)
        # The caller waits on plain futures meanwhile, taking every outcome
        # that arrives, those of the futures with callbacks too.
        assert executor.submit(square, i).result() == i * i
    # And on the futures with callbacks themselves.
    assert [f.result() for f in with_callbacks] == [i * i for i in range(20)]
    assert done.wait(30)
    assert sorted(value for value, _ in ran_in) == [i * i for i in range(20)]
    assert all(thread is not threading.main_thread() for _, thread in ran_in)


@pytest.mark.timeout(60)
def test_a_result_that_timed_out_is_settled_for_other_waiters(executor):
    future = executor.submit(slow_square, 7, 0.5)
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.01)
    # Nobody waits in result() when it arrives: the service thread settles it.
    done, _ = cf.wait([future], timeout=30)
    assert done == {future}
    assert future.result(timeout=0) == 49


@pytest.mark.timeout(60)
def test_as_completed_in_another_thread_while_the_caller_waits(executor):
    watched = [executor.submit(slow_square, i, 0.02) for i in range(10)]
    seen = []
    watcher = threading.Thread(
        target=lambda: seen.extend(f.result() for f in cf.as_completed(watched, timeout=30))
    )
    watcher.start()
    for i in range(50):
        assert executor.submit(square, i).result() == i * i
    watcher.join(30)
    assert sorted(seen) == [i * i for i in range(10)]


@pytest.mark.timeout(60)
def test_an_interrupted_wait_leaves_nothing_unsettled(executor):
    # KeyboardInterrupt raised inside result() (as Ctrl-C would) while the
    # waiter counts as the one taking outcomes.
    future = executor.submit(slow_square, 3, 0.3)
    timer = threading.Timer(0.1, lambda: _interrupt_main())
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        future.result()
    timer.join()
    done, _ = cf.wait([future], timeout=30)
    assert done == {future}
    assert future.result() == 9


def _interrupt_main() -> None:
    import _thread

    _thread.interrupt_main()


def _replacement(x):
    return -x


@pytest.mark.timeout(60)
def test_a_function_whose_name_moved_fails_to_pickle_as_with_the_stdlib(monkeypatch):
    original = _helpers.square
    with ferropool.Pool(1, serializer="pickle") as pool:
        assert pool.apply(original, (3,)) == 9  # pickled once, kept
        monkeypatch.setattr(_helpers, "square", _replacement)
        with pytest.raises(pickle.PicklingError, match="not the same object"):
            pickle.dumps(original)  # what the stdlib's Pool meets
        with pytest.raises(pickle.PicklingError, match="not the same object"):
            pool.apply(original, (3,))
        assert pool.apply(_helpers.square, (3,)) == -3  # the name's new function
        monkeypatch.setattr(_helpers, "square", original)
        assert pool.apply(original, (4,)) == 16
    # By default, what the standard pickler refuses goes by value (cloudpickle).
    monkeypatch.setattr(_helpers, "square", _replacement)
    with ferropool.Pool(1) as pool:
        assert pool.apply(original, (3,)) == 9


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_let_go_of_finished_jobs_functions(method, tmp_path):
    path = str(tmp_path / "dropped")
    with ferropool.get_context(method).Pool(1) as pool:
        # Small: forgotten with the frames of the job after next at the latest.
        assert pool.apply(_helpers.DropReporter(path), (1,)) == 1
        assert pool.apply(square, (3,)) == 9
        assert pool.apply(_helpers.dropped, (path,)) == ["0"]
        # Large (a 1 MiB pickle): forgotten as soon as its job is done.
        big = _helpers.DropReporter(path, ballast=1 << 20)
        assert pool.map(big, [1, 2, 3]) == [1, 2, 3]
        del big
        assert pool.apply(_helpers.dropped, (path,)) == ["0", str(1 << 20)]
