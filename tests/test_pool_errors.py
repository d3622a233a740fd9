"""Errors: exceptions raised in workers, timeouts, results and arguments that
cannot be pickled, a failing input iterable, bad arguments to the Pool and its
methods, and a pool that is no longer running; all as multiprocessing.Pool
(Python 3.11) reports them."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
import time
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback

import _helpers as h
import ferropool
import pytest


def drain(it):
    """Iterates `it` to the end; exceptions are recorded in place."""
    out = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out
        except Exception as e:
            out.append(e)


# ----- a worker's exception --------------------------------------------------


def test_exception_type_message_and_remote_traceback(pool):
    with pytest.raises(ValueError) as info:
        pool.apply(h.raise_value_error, ("broken on purpose",))
    exc = info.value
    assert type(exc) is ValueError
    assert exc.args == ("broken on purpose",)
    cause = exc.__cause__
    assert isinstance(cause, RemoteTraceback)
    text = str(cause)
    assert "Traceback (most recent call last)" in text
    assert "raise_value_error" in text
    assert "_helpers.py" in text
    assert "ValueError: broken on purpose" in text


def test_custom_exception_class_survives(pool):
    with pytest.raises(h.CustomError, match="mine") as info:
        pool.apply_async(h.raise_custom, ("mine",)).get(timeout=30)
    assert type(info.value) is h.CustomError
    assert isinstance(info.value.__cause__, RemoteTraceback)


def test_key_error_keeps_its_args(xpool):
    with pytest.raises(KeyError) as info:
        xpool.apply(h.raise_key_error, ("missing",))
    assert info.value.args == ("missing",)


@pytest.mark.parametrize("chunksize", [None, 1, 3])
def test_map_raises_the_failing_items_exception(pool, chunksize):
    with pytest.raises(ValueError, match="bad item 2") as info:
        pool.map(h.fail_on, range(6), chunksize)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on" in str(info.value.__cause__)


def test_map_async_and_starmap_raise(xpool):
    res = xpool.map_async(h.fail_on, range(5))
    with pytest.raises(ValueError, match="bad item 2"):
        res.get(timeout=30)
    assert res.ready() and not res.successful()
    with pytest.raises(ValueError, match="bad item 7"):
        xpool.starmap(h.fail_on, [(1, 7), (7, 7)])
    with pytest.raises(ValueError, match="bad item 3"):
        xpool.starmap_async(h.fail_on, [(3, 3)]).get(timeout=30)


def test_pool_keeps_working_after_task_exceptions(pool):
    for _ in range(3):
        with pytest.raises(ValueError):
            pool.apply(h.raise_value_error, ("x",))
    assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]


def test_imap_chunksize_1_raises_at_position_and_goes_on(pool):
    out = drain(pool.imap(h.fail_on, range(5)))
    assert out[:2] == [0, 1]
    assert isinstance(out[2], ValueError) and str(out[2]) == "bad item 2"
    assert isinstance(out[2].__cause__, RemoteTraceback)
    assert out[3:] == [3, 4]


def test_imap_with_chunks_stops_after_the_error(xpool):
    # The stdlib's chunked imap is a generator over the chunks: it ends once
    # the failing chunk raised.
    out = drain(xpool.imap(h.fail_on, range(6), 2))
    assert out[:2] == [0, 1]
    assert isinstance(out[2], ValueError) and str(out[2]) == "bad item 2"
    assert out[3:] == []


def test_imap_unordered_raises_once_and_yields_the_rest(xpool):
    out = drain(xpool.imap_unordered(h.fail_on, range(5)))
    errors = [e for e in out if isinstance(e, Exception)]
    assert [str(e) for e in errors] == ["bad item 2"]
    assert sorted(v for v in out if not isinstance(v, Exception)) == [0, 1, 3, 4]


# ----- an exception in the input iterable ------------------------------------


def test_imap_input_error_surfaces_at_its_position(pool):
    out = drain(pool.imap(h.square, h.failing_numbers(6, fail_at=3)))
    assert out[:3] == [0, 1, 4]
    assert isinstance(out[3], KeyError)
    assert out[3].args == ("input broke at 3",)
    assert out[4:] == []
    assert pool.map(h.square, range(3)) == [0, 1, 4]


def test_imap_input_error_with_chunks(xpool):
    # Items 2 and 3 would form the second chunk: it fails as a whole.
    out = drain(xpool.imap(h.square, h.failing_numbers(6, fail_at=3), 2))
    assert out[:2] == [0, 1]
    assert isinstance(out[2], KeyError)
    assert out[3:] == []


def test_imap_unordered_input_error(xpool):
    out = drain(xpool.imap_unordered(h.square, h.failing_numbers(6, fail_at=3)))
    errors = [e for e in out if isinstance(e, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], KeyError)
    assert sorted(v for v in out if not isinstance(v, Exception)) == [0, 1, 4]


def test_map_input_error_raises_in_caller(xpool):
    with pytest.raises(KeyError, match="input broke at 2"):
        xpool.map(h.square, h.failing_numbers(5, fail_at=2))
    # ferropool reads input without a length lazily (the stdlib lists it inside
    # the call), so the input's exception comes from get().
    result = xpool.starmap_async(h.add, ((i, i) for i in h.failing_numbers(5, fail_at=0)))
    with pytest.raises(KeyError):
        result.get(timeout=30)
    assert xpool.map(h.square, [2]) == [4]


# ----- timeouts ----------------------------------------------------------------


def test_get_timeout_raises_multiprocessing_timeout_error(pool):
    res = pool.apply_async(h.sleep_then, (0.5, "v"))
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(timeout=0.01)
    with pytest.raises(multiprocessing.TimeoutError):
        res.get(0)
    assert res.get(timeout=30) == "v"


def test_imap_next_timeout_raises_multiprocessing_timeout_error(pool):
    it = pool.imap(h.delayed, [(0.5, "v"), (0.0, "w")])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.01)
    assert it.next(timeout=30) == "v"
    assert it.next(timeout=30) == "w"


# ----- results and arguments that cannot be pickled --------------------------


@pytest.mark.parametrize("func", [h.return_lambda, h.return_lock], ids=["lambda", "lock"])
def test_unpicklable_result_raises_maybe_encoding_error(pool, func):
    with pytest.raises(MaybeEncodingError) as info:
        pool.apply(func)
    assert str(info.value).startswith("Error sending result: ")
    assert "Reason: " in str(info.value)
    assert isinstance(info.value.exc, str) and isinstance(info.value.value, str)
    # The pool keeps working.
    assert pool.apply(h.square, (4,)) == 16
    assert pool.map(h.square, range(4)) == [0, 1, 4, 9]


def test_unpicklable_result_in_map(xpool):
    with pytest.raises(MaybeEncodingError, match="Error sending result"):
        xpool.map(h.return_lock_for, [0, 1, 2, 3], chunksize=1)
    assert xpool.map(h.square, [3]) == [9]


def test_unpicklable_result_in_imap_at_its_position(xpool):
    out = drain(xpool.imap(h.lock_if_two, range(4)))
    assert out[:2] == [0, 1]
    assert isinstance(out[2], MaybeEncodingError)
    assert out[3:] == [3]


def test_unpicklable_result_error_callback(xpool):
    errors = []
    res = xpool.apply_async(h.return_lock, error_callback=errors.append)
    with pytest.raises(MaybeEncodingError):
        res.get(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], MaybeEncodingError)


def test_unpicklable_argument_raises_in_caller_and_pool_works(pool):
    lock = threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        pool.apply_async(h.identity, (lock,)).get(timeout=30)
    with pytest.raises(TypeError, match="pickle"):
        pool.apply(h.identity, (lock,))
    with pytest.raises(TypeError, match="pickle"):
        pool.map(h.identity, [1, lock])
    with pytest.raises(TypeError, match="pickle"):
        pool.starmap(h.add, [(1, lock)])
    with pytest.raises(TypeError, match="pickle"):
        pool.apply(h.identity, kwds={"x": lock})
    assert pool.apply(h.square, (5,)) == 25
    assert pool.map(h.square, range(3)) == [0, 1, 4]


def test_unpicklable_function_raises_in_caller(xpool):
    lock = threading.Lock()  # not even cloudpickle sends the closure

    def local_function(x):
        with lock:
            return x

    with pytest.raises((AttributeError, pickle.PicklingError)):
        xpool.apply_async(local_function, (1,)).get(timeout=30)
    with pytest.raises((AttributeError, pickle.PicklingError)):
        xpool.map(local_function, [1, 2])
    assert xpool.apply(h.square, (3,)) == 9


def test_imap_unpicklable_item_raises_at_its_position_and_goes_on(xpool):
    # The stdlib fails only the task it could not send, and sends the rest.
    out = drain(xpool.imap(h.square, [1, threading.Lock(), 3]))
    assert out[0] == 1
    assert isinstance(out[1], TypeError) and "pickle" in str(out[1])
    assert out[2:] == [9]
    assert xpool.map(h.square, [2]) == [4]


# ----- bad arguments -------------------------------------------------------------


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_must_be_at_least_one(processes):
    with pytest.raises(ValueError, match="^Number of processes must be at least 1$"):
        ferropool.Pool(processes)


def test_initializer_must_be_callable():
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ferropool.Pool(1, initializer=3)


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_maxtasksperchild_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
        ferropool.Pool(1, maxtasksperchild=value)


def test_bad_arguments_through_a_context(method):
    ctx = ferropool.get_context(method)
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        ctx.Pool(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ctx.Pool(1, initializer="not callable")
    with pytest.raises(ValueError, match="maxtasksperchild"):
        ctx.Pool(1, maxtasksperchild=0)


CALLS = {
    "apply": lambda p, f: p.apply(f, (1,)),
    "apply_async": lambda p, f: p.apply_async(f, (1,)).get(timeout=30),
    "map": lambda p, f: p.map(f, [1, 2]),
    "map_async": lambda p, f: p.map_async(f, [1, 2]).get(timeout=30),
    "starmap": lambda p, f: p.starmap(f, [(1,)]),
    "starmap_async": lambda p, f: p.starmap_async(f, [(1,)]).get(timeout=30),
    "imap": lambda p, f: list(p.imap(f, [1, 2])),
    "imap_unordered": lambda p, f: list(p.imap_unordered(f, [1, 2])),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_non_callable_func_raises_type_error(xpool, call):
    with pytest.raises(TypeError, match="'int' object is not callable"):
        CALLS[call](xpool, 5)
    assert xpool.apply(h.square, (2,)) == 4


@pytest.mark.parametrize("call", ["apply_async", "map_async", "starmap_async", "imap"])
def test_non_callable_func_raises_at_call_time(xpool, call):
    # ferropool's documented difference: the stdlib only fails the task in the
    # worker; ferropool refuses the call before anything is sent.
    submit = getattr(xpool, call)
    args = ((1,),) if call == "apply_async" else ([1],)
    with pytest.raises(TypeError, match="not callable"):
        submit(None, *args)


@pytest.mark.parametrize("imap", ["imap", "imap_unordered"])
@pytest.mark.parametrize("chunksize", [0, -3])
def test_imap_chunksize_below_one(xpool, imap, chunksize):
    with pytest.raises(ValueError, match=f"Chunksize must be 1\\+, not {chunksize}"):
        getattr(xpool, imap)(h.square, [1, 2], chunksize)
    assert xpool.apply(h.square, (2,)) == 4


def test_pickling_a_pool_raises(xpool):
    with pytest.raises(NotImplementedError, match="pool objects cannot be passed"):
        pickle.dumps(xpool)
    with pytest.raises(NotImplementedError):
        xpool.apply(h.identity, (xpool,))
    assert xpool.apply(h.square, (2,)) == 4


# ----- a pool that is not running ------------------------------------------------


SUBMIT = {
    "apply": lambda p: p.apply(h.square, (1,)),
    "apply_async": lambda p: p.apply_async(h.square, (1,)),
    "map": lambda p: p.map(h.square, [1]),
    "map_async": lambda p: p.map_async(h.square, [1]),
    "starmap": lambda p: p.starmap(h.add, [(1, 2)]),
    "starmap_async": lambda p: p.starmap_async(h.add, [(1, 2)]),
    "imap": lambda p: p.imap(h.square, [1]),
    "imap_unordered": lambda p: p.imap_unordered(h.square, [1]),
}


@pytest.mark.parametrize("stop", ["close", "terminate"])
@pytest.mark.parametrize("call", list(SUBMIT))
def test_pool_not_running(call, stop):
    pool = ferropool.Pool(1)
    try:
        getattr(pool, stop)()
        with pytest.raises(ValueError, match="^Pool not running$"):
            SUBMIT[call](pool)
    finally:
        pool.terminate()
        pool.join()


def test_enter_a_closed_pool_raises():
    pool = ferropool.Pool(1)
    pool.close()
    pool.join()
    with pytest.raises(ValueError, match="Pool not running"):
        with pool:
            pass


def test_join_a_running_pool_raises(xpool):
    with pytest.raises(ValueError, match="Pool is still running"):
        xpool.join()
    assert xpool.apply(h.square, (3,)) == 9


# ----- a callback that raises ----------------------------------------------------


def _wait_for_record(caplog, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if predicate(r)]
        if found:
            return found
        time.sleep(0.02)
    return []


@pytest.mark.parametrize("which", ["callback", "error_callback"])
def test_raising_callback_is_logged_and_pool_keeps_working(xpool, caplog, which):
    # The stdlib's result thread dies here (and the pool hangs); ferropool
    # logs the callback's exception and carries on.
    def bad_callback(_value):
        raise RuntimeError("callback exploded")

    caplog.set_level(logging.ERROR, logger="ferropool")
    if which == "callback":
        res = xpool.apply_async(h.square, (3,), callback=bad_callback)
        assert res.get(timeout=30) == 9
    else:
        res = xpool.apply_async(h.raise_value_error, ("x",), error_callback=bad_callback)
        with pytest.raises(ValueError):
            res.get(timeout=30)
    records = _wait_for_record(
        caplog, lambda r: r.name.startswith("ferropool") and r.exc_info is not None
    )
    assert records, caplog.text
    assert "callback exploded" in caplog.text
    # Later results and later callbacks still arrive.
    seen = []
    assert xpool.apply_async(h.square, (4,), callback=seen.append).get(timeout=30) == 16
    assert seen == [16]
    assert xpool.map(h.square, range(3)) == [0, 1, 4]


NO_MAIN_GUARD = """
import sys
import ferropool

def square(x):
    return x * x

pool = ferropool.get_context(sys.argv[1]).Pool(2)  # no `if __name__ == "__main__":`
print(pool.map(square, range(3)))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_main_module_without_the_guard_is_named_as_a_cause(tmp_path, method):
    """A spawned worker (or the fork server) imports the main module, which
    starts a pool again: the child prints the stdlib's RuntimeError, and the
    caller's error names the missing guard."""
    from _support import run_script

    done = run_script(tmp_path, NO_MAIN_GUARD, method)
    assert done.returncode != 0
    last = done.stderr.splitlines()[-1]
    # spawn: the workers die, the pool breaks; forkserver: the fork server
    # itself imports the main module and dies, so the pool cannot start.
    expected = "BrokenProcessPool" if method == "spawn" else "OSError: the forkserver process"
    assert last.startswith(("concurrent.futures.process." + expected, expected)), last
    assert 'if __name__ == "__main__":' in last
    assert "bootstrapping phase" in done.stderr  # the stdlib's words, from the child
