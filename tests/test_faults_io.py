"""Fault injection: things that cannot be pickled either way, and bounded
reading of input (imap, imap_unordered, map_async, the executor map).

Shared helpers: _fault_cases.py and _fault_helpers.py; faults that need a
separate parent process are in test_faults_process.py. Time limits are
hang guards, never speed requirements."""

from __future__ import annotations

import gc
import threading
import time
from multiprocessing.pool import MaybeEncodingError

import _fault_helpers as fh
import _helpers as h
import ferropool
import pytest
from _fault_cases import error_text, rss
from ferropool import (
    BrokenProcessPool,
    ProcessPoolExecutor,
)

# ============================================================================
# 6. Pickling failures, both ways
# ============================================================================


def _assert_names(exc, tag):
    assert tag in str(exc), f"the error does not name the object {tag!r}: {exc!r}"


def _assert_nothing_ran(directory, settle=0.3):
    time.sleep(settle)
    assert list(directory.iterdir()) == [], "a task ran although its call was refused"


def test_unpicklable_argument_raises_in_caller_naming_it(tmp_path, gpool):
    ran = tmp_path / "ran"
    ran.mkdir()
    bad = fh.Unsendable("tag-argument")
    with pytest.raises(Exception) as info:
        gpool.apply_async(fh.touch_pair, (str(ran / "a"), bad))
    _assert_names(info.value, "tag-argument")
    with pytest.raises(Exception) as info:
        gpool.apply(fh.touch_pair, (str(ran / "b"),), {"_other": fh.Unsendable("tag-keyword")})
    _assert_names(info.value, "tag-keyword")
    _assert_nothing_ran(ran)
    assert gpool.apply(fh.square, (5,)) == 25


@pytest.mark.parametrize("call", ["map", "map_async", "starmap", "starmap_async"])
def test_unpicklable_item_refuses_the_whole_map_before_sending(tmp_path, gpool, call):
    ran = tmp_path / "ran"
    ran.mkdir()
    paths = [str(ran / f"item{i}") for i in range(6)]
    if call.startswith("starmap"):
        items = [(None, p) for p in paths]
        items[3] = (fh.Unsendable("tag-item-3"), paths[3])
        func = fh.touch_second
    else:
        items = list(paths)
        items[3] = fh.Unsendable("tag-item-3")
        func = fh.touch
    with pytest.raises(Exception) as info:
        res = getattr(gpool, call)(func, items, 1)
        if call.endswith("_async"):
            res.get(timeout=30)
    _assert_names(info.value, "tag-item-3")
    _assert_nothing_ran(ran)
    assert gpool.map(fh.square, range(3)) == [0, 1, 4]


def test_unpicklable_function_raises_in_caller_naming_it(tmp_path, gpool):
    lock = threading.Lock()  # not even cloudpickle sends the closure

    def local_task_function(x):
        with lock:
            return x

    for call in (
        lambda: gpool.apply_async(local_task_function, (1,)),
        lambda: gpool.map(local_task_function, [1, 2]),
        lambda: gpool.imap(local_task_function, [1, 2]),
    ):
        with pytest.raises(Exception) as info:
            call()
        _assert_names(info.value, "local_task_function")
    assert gpool.apply(fh.square, (3,)) == 9


def test_imap_unpicklable_item_fails_at_its_position_naming_it(gpool):
    out = fh.drain(gpool.imap(fh.square, [1, fh.Unsendable("tag-imap"), 3]))
    assert out[0] == 1 and out[2] == 9
    assert isinstance(out[1], Exception)
    _assert_names(out[1], "tag-imap")


def test_executor_unpicklable_argument_names_it(gexecutor):
    ex = gexecutor
    try:
        future = ex.submit(fh.square, fh.Unsendable("tag-submit"))
        exc = future.exception(timeout=30)
    except Exception as e:  # raising at submit() is fine too
        exc = e
    assert exc is not None
    _assert_names(exc, "tag-submit")
    with pytest.raises(Exception) as info:
        list(ex.map(fh.square, [1, fh.Unsendable("tag-map"), 3]))
    _assert_names(info.value, "tag-map")
    assert ex.submit(fh.square, 4).result(timeout=30) == 16


@pytest.fixture
def gexecutor():
    """A 2-worker executor (default start method), stopped with a hang guard."""
    ex = ProcessPoolExecutor(2)
    yield ex
    fh.stop_guarded(ex)


def test_unpicklable_result_fails_that_task_only(gpool, gexecutor):
    out = fh.drain(gpool.imap(h.lock_if_two, range(5)))
    assert out[:2] == [0, 1] and out[3:] == [3, 4]
    assert isinstance(out[2], MaybeEncodingError)
    results = [gpool.apply_async(h.lock_if_two, (i,)) for i in range(4)]
    outcomes = [fh.outcome_of(r.get, 30) for r in results]
    assert outcomes[:2] == [0, 1] and outcomes[3] == 3
    assert isinstance(outcomes[2], MaybeEncodingError)
    # The executor, as the stdlib's: the pickling error itself.
    futures = [gexecutor.submit(h.lock_if_two, i) for i in range(4)]
    exc = futures[2].exception(timeout=30)
    assert isinstance(exc, TypeError) and "lock" in str(exc), repr(exc)
    assert [futures[i].result(timeout=30) for i in (0, 1, 3)] == [0, 1, 3]


EXCEPTION_CASES = {
    # kind -> (the type name, the message) the caller must see
    "unpicklable": ("HoldsLock", "holds a lock at 2"),
    "not_unpicklable": ("NeedsTwoArgs", "needs two at 2"),
    "worker_only": ("WorkerOnlyError", "worker-only at 2"),
}


def _assert_exception_reached_caller(exc, kind):
    type_name, message = EXCEPTION_CASES[kind]
    assert isinstance(exc, ferropool.RemoteTaskError), repr(exc)
    # One that pickled but cannot be unpickled here is a TaskTransferError,
    # a BrokenProcessPool as the stdlib executor's (which breaks there).
    assert isinstance(exc, ferropool.TaskTransferError) == (kind != "unpicklable"), repr(exc)
    text = error_text(exc)
    assert type_name in text, text
    assert message in text, text
    # The worker's traceback: the function that raised, in the worker.
    assert "fail_one" in text, text


@pytest.mark.parametrize("kind", list(EXCEPTION_CASES))
def test_exception_that_cannot_travel_still_reaches_the_caller(pool, kind):
    """Cannot be pickled in the worker / cannot be unpickled in the parent /
    its class exists only in the worker: an error with its type name,
    message and traceback text all the same, on that task only, and the
    pool goes on. (The second case hangs multiprocessing.Pool.)"""
    res = pool.apply_async(fh.fail_one, (2, 2, kind))
    _assert_exception_reached_caller(fh.outcome_of(res.get, 30), kind)
    with pytest.raises(Exception) as info:
        pool.starmap(fh.fail_one, [(i, 2, kind) for i in range(5)], chunksize=1)
    _assert_exception_reached_caller(info.value, kind)
    out = fh.drain(pool.imap(_fail_one_star, [(i, 2, kind) for i in range(5)]))
    assert out[:2] == [0, 1] and out[3:] == [9, 16]
    _assert_exception_reached_caller(out[2], kind)
    assert pool.map(fh.square, range(6)) == [0, 1, 4, 9, 16, 25]


def _fail_one_star(args):
    return fh.fail_one(*args)


@pytest.mark.parametrize("kind", list(EXCEPTION_CASES))
def test_executor_exception_that_cannot_travel(gexecutor, kind):
    futures = [gexecutor.submit(fh.fail_one, i, 2, kind) for i in range(4)]
    _assert_exception_reached_caller(futures[2].exception(timeout=30), kind)
    assert [futures[i].result(timeout=30) for i in (0, 1, 3)] == [0, 1, 9]
    assert gexecutor.submit(fh.square, 5).result(timeout=30) == 25


def test_result_that_cannot_be_unpickled_fails_its_task_only(gpool):
    results = [gpool.apply_async(fh.return_worker_only) for _ in range(2)]
    for res in results:
        exc = fh.outcome_of(res.get, 30)
        assert isinstance(exc, ferropool.TaskTransferError) and isinstance(exc, BrokenProcessPool)
        assert "WorkerOnlyValue" in error_text(exc) or fh.WORKER_ONLY_MODULE in error_text(exc)
    assert gpool.map(fh.square, range(4)) == [0, 1, 4, 9]


# ============================================================================
# 7. Bounded input
# ============================================================================

# Generous: the default bound is a few chunks per worker; reading without a
# bound takes the whole input within the pauses below.
DEFAULT_BOUND_CHUNKS = 256


def _pause_and_measure(src, settle=0.5):
    """How far `src` was read once the feeding had time to run ahead."""
    time.sleep(settle)
    first = src.taken
    time.sleep(settle)
    return max(first, src.taken)


@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_imap_default_reads_input_lazily_while_the_consumer_pauses(ordered, gpool):
    src = fh.CountingRange(10**6)
    imap = gpool.imap if ordered else gpool.imap_unordered
    it = imap(fh.square, src)
    got = [next(it) for _ in range(50)]
    if ordered:
        assert got == [i * i for i in range(50)]
    taken = _pause_and_measure(src)
    assert taken <= 50 + DEFAULT_BOUND_CHUNKS, f"read {taken} items ahead of 50 consumed"
    more = [next(it) for _ in range(50)]
    if ordered:
        assert more == [i * i for i in range(50, 100)]


@pytest.mark.parametrize("chunksize", [1, 5])
@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_imap_buffersize_bounds_what_is_read_ahead(ordered, chunksize, gpool):
    buffersize = 3
    src = fh.CountingRange(10**5)
    imap = gpool.imap if ordered else gpool.imap_unordered
    it = imap(fh.square, src, chunksize, buffersize=buffersize)
    consumed = 4 * chunksize + 1
    got = [next(it) for _ in range(consumed)]
    if ordered:
        assert got == [i * i for i in range(consumed)]
    taken = _pause_and_measure(src, 0.3)
    chunks_yielded = -(-consumed // chunksize)
    # buffersize chunks not yet yielded, one per worker of slack, one being read.
    limit = (chunks_yielded + buffersize + 2 + 1) * chunksize
    assert taken <= limit, f"read {taken} items, expected at most {limit}"


@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_imap_buffersize_gives_every_result(ordered, gpool):
    imap = gpool.imap if ordered else gpool.imap_unordered
    out = list(imap(fh.square, fh.CountingRange(500), 7, buffersize=2))
    if not ordered:
        out.sort()
    assert out == [i * i for i in range(500)]


@pytest.mark.timeout(30)
def test_close_join_after_partly_consumed_buffered_imap_does_not_hang(gpool):
    it = gpool.imap(fh.square, fh.CountingRange(1000), buffersize=2)
    assert next(it) == 0
    gpool.close()
    gpool.join()


@pytest.mark.parametrize("chunksize", [None, 1, 16])
def test_map_async_reads_a_generator_lazily(chunksize, gpool):
    src = fh.CountingRange(10**6)
    res = gpool.map_async(fh.sleep_square, src, chunksize, buffersize=4)
    taken = _pause_and_measure(src, 0.3)
    # 2 workers x 0.6 s / 0.05 s per item = at most ~24 items done.
    assert taken <= 24 * (chunksize or 1) + 6 * (chunksize or 256), taken
    assert not res.ready()


def test_map_async_default_reads_a_generator_lazily(gpool):
    src = fh.CountingRange(10**6)
    res = gpool.map_async(fh.sleep_square, src)
    taken = _pause_and_measure(src, 0.3)
    assert taken < 10**5, f"map_async read {taken} items of a generator up front"
    assert not res.ready()


@pytest.mark.parametrize("chunksize", [None, 7])
def test_map_async_of_a_generator_gives_every_result_in_order(chunksize, gpool):
    seen = []
    res = gpool.map_async(
        fh.square, fh.CountingRange(1000), chunksize, callback=seen.append, buffersize=3
    )
    assert res.get(timeout=30) == [i * i for i in range(1000)]
    assert seen == [[i * i for i in range(1000)]]
    pairs = ((i, i + 1) for i in range(300))
    expected = [2 * i + 1 for i in range(300)]
    assert gpool.starmap_async(h.add, pairs, buffersize=2).get(timeout=30) == expected
    assert gpool.map_async(fh.square, iter(range(50))).get(timeout=30) == [i * i for i in range(50)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tasks", ["slow", "fast"])
@pytest.mark.parametrize("call", ["imap", "map_async"])
def test_terminate_while_input_is_being_fed(call, tasks):
    """terminate() while a lazy map still reads its input: with slow tasks
    the feeding waits for room, with fast ones it is busy reading. Either
    way terminate returns at once, the feeding stops without an error of
    its own (pytest turns an exception in a thread into an error), and the
    unfinished work fails with BrokenProcessPool."""
    func = fh.sleep_square if tasks == "slow" else fh.square
    for _ in range(3):
        src = fh.CountingRange(10**6)
        pool = ferropool.Pool(2)
        try:
            if call == "imap":
                res = pool.imap(func, src, buffersize=2)
                assert next(res) == 0
            else:
                res = pool.map_async(func, src, 1, buffersize=2)
            time.sleep(0.3)
        finally:
            fh.stop_guarded(pool)
        if call == "imap":
            exc = fh.outcome_of(fh.drain_until_error, res, 10)
        else:
            exc = fh.outcome_of(res.get, 10)
        assert isinstance(exc, BrokenProcessPool), repr(exc)
        assert src.taken < 10**6


@pytest.mark.parametrize("call", ["imap", "imap_unordered", "map_async"])
def test_buffersize_must_be_a_positive_int(call, gpool):
    method = getattr(gpool, call)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            res = method(fh.square, iter(range(3)), buffersize=bad)
            list(res) if call != "map_async" else res.get(timeout=30)
    for bad in (1.5, "2"):
        with pytest.raises(TypeError):
            res = method(fh.square, iter(range(3)), buffersize=bad)
            list(res) if call != "map_async" else res.get(timeout=30)
    assert gpool.map(fh.square, range(3)) == [0, 1, 4]


TEN_MILLION = 10_000_000
BIG_CHUNK = 10_000
# The parent may grow a little (buffers, allocator noise); reading the
# whole input ahead would take hundreds of MB.
FLAT = 64 * 2**20


@pytest.mark.timeout(120)
@pytest.mark.parametrize("call", ["imap", "imap_unordered", "executor_map"])
def test_ten_million_items_memory_stays_flat(call):
    """Ten million items through a trivial function in big chunks: in the
    middle, the input was read far less than all the way, and the parent's
    memory has not grown."""
    src = fh.CountingRange(TEN_MILLION)
    consumed = 100 * BIG_CHUNK
    if call == "executor_map":
        ctx = ProcessPoolExecutor(2)
    else:
        ctx = ferropool.Pool(2)
    with fh.guarded(ctx) as runner:
        # Warm up the workers and the parent's allocator first.
        if call == "executor_map":
            list(runner.map(fh.square, range(4 * BIG_CHUNK), chunksize=BIG_CHUNK))
            it = runner.map(fh.square, src, chunksize=BIG_CHUNK, buffersize=8)
        else:
            list(runner.imap(fh.square, range(4 * BIG_CHUNK), BIG_CHUNK))
            it = getattr(runner, call)(fh.square, src, BIG_CHUNK)
        gc.collect()
        before = rss()
        total = 0
        for _ in range(consumed):
            total += next(it)
        taken = _pause_and_measure(src, 0.5)
        grown = rss() - before
        if call == "imap":
            assert total == sum(i * i for i in range(consumed))
        assert taken <= consumed + DEFAULT_BOUND_CHUNKS * BIG_CHUNK // 4, (
            f"{taken} of {TEN_MILLION} items read with {consumed} consumed"
        )
        assert taken < TEN_MILLION // 2
        assert grown < FLAT, f"the parent grew by {grown / 2**20:.0f} MiB"
        if call == "executor_map":
            it.close()
