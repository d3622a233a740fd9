"""Large arguments and results (a megabyte and more) travel without extra
copies: through shared memory (a memfd handed over the socket), or the
engine lends its buffer to the unpickling, then recycles it. Results must be
exactly what a copy would give, whatever happens around."""

from __future__ import annotations

import threading
import time

import _helpers as h
import pytest

MIB = 1 << 20


def payloads():
    return [
        bytes(range(256)) * (4 * MIB // 256),  # 4 MiB bytes
        bytearray(b"x" * (3 * MIB + 7)),  # a bytearray, odd size
        [b"y" * (MIB + 1), "s" * MIB],  # a list of large objects
        b"z" * (MIB - 1),  # just under the lending size
    ]


def test_large_arguments_and_results_come_back_equal(make_pool):
    pool = make_pool(2)
    sent = payloads()
    got = pool.map(h.identity, sent, chunksize=1)
    assert got == sent
    assert [type(x) for x in got] == [type(x) for x in sent]
    # Recycled buffers must not leak one result's bytes into another.
    again = pool.map(h.identity, list(reversed(sent)), chunksize=1)
    assert again == list(reversed(sent))


def test_many_large_results_in_flight_stay_distinct(make_pool):
    pool = make_pool(2)
    items = [bytes([i]) * (2 * MIB) for i in range(12)]
    for i, result in enumerate(pool.imap(h.identity, items)):
        assert len(result) == 2 * MIB and result[0] == i and result[-1] == i


def test_a_large_argument_to_a_failing_task_raises_and_the_pool_goes_on(make_pool):
    pool = make_pool(2)
    with pytest.raises(ZeroDivisionError):
        pool.apply(h.divide_len_by_zero, (b"q" * (2 * MIB),))
    assert pool.apply(len, (b"q" * (2 * MIB),)) == 2 * MIB


def test_executor_large_results(method):
    import ferropool

    with ferropool.ProcessPoolExecutor(2, mp_context=ferropool.get_context(method)) as ex:
        data = b"e" * (5 * MIB)
        assert ex.submit(h.identity, data).result(timeout=60) == data
        assert list(ex.map(h.identity, [data, data[:MIB]])) == [data, data[:MIB]]


# ----- arguments pickled into the engine's recycled buffers ------------------


def test_large_arguments_are_pickled_into_engine_buffers():
    from ferropool import _native
    from ferropool._pickling import dumps_payload

    small = dumps_payload(("x", [1, 2]))
    assert isinstance(small, bytes)
    big = [bytes(range(256)) * (2 * MIB // 256), bytearray(b"b" * MIB), "tail"]
    payload = dumps_payload(big)
    assert isinstance(payload, _native.EnginePayload)
    assert len(payload) > 3 * MIB
    # In a memfd, unless memfds cannot be had (or FERROPOOL_NO_MEMFD).
    assert payload.in_shared_memory() == (_native.platform_features()["memfd"] == "native")
    import pickle

    assert pickle.loads(payload.to_bytes()) == big


def test_every_buffer_kind_pickles_into_engine_buffers_unchanged():
    import array
    import pickle

    from ferropool._pickling import dumps_payload

    buffers = [
        bytearray(b"\x01\x02" * MIB),  # written as a bytearray
        pickle.PickleBuffer(bytearray(b"p" * (MIB + 3))),  # as a PickleBuffer
        array.array("d", range(MIB // 8 * 3)),  # through its own reducer
        memoryview(b"m" * (2 * MIB)).toreadonly().tobytes(),
    ]
    for obj in buffers:
        payload = dumps_payload([obj])
        back = pickle.loads(payload.to_bytes())[0]
        expected = bytearray(obj.raw()) if isinstance(obj, pickle.PickleBuffer) else obj
        assert back == expected, type(obj)


def test_a_large_chunk_that_fails_to_pickle_leaves_the_writer_clean(make_pool):
    from ferropool._pickling import dumps_payload

    with pytest.raises(Exception, match="item 1 of the input"):
        make_pool(2).map(h.identity, [b"a" * (2 * MIB), threading.Lock()], chunksize=2)
    # The half-written payload was dropped: the next one is whole and alone.
    data = [b"c" * (3 * MIB)]
    import pickle

    assert pickle.loads(dumps_payload(data).to_bytes()) == data


def test_large_apply_map_and_executor_arguments_reach_the_workers(method):
    import ferropool

    ctx = ferropool.get_context(method)
    blocks = [bytes([i]) * (3 * MIB) for i in range(6)]
    with ctx.Pool(2) as pool:
        assert pool.apply(len, (blocks[0],)) == 3 * MIB
        assert pool.map(h.identity, blocks, chunksize=1) == blocks
        assert list(pool.imap(h.identity, iter(blocks))) == blocks
    with ferropool.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert ex.submit(h.identity, blocks[1]).result(timeout=60) == blocks[1]
        assert list(ex.map(h.identity, blocks)) == blocks


def test_a_large_sized_map_is_fed_a_window_at_a_time(make_pool):
    """Past 32 MiB of pickled input, the rest of a sized map is pickled as
    results come back: results stay complete and in order."""
    pool = make_pool(2)
    blocks = [bytes([i]) * (3 * MIB) for i in range(24)]  # 72 MiB
    assert pool.map(h.identity, blocks, chunksize=1) == blocks
    async_result = pool.map_async(h.identity, blocks, chunksize=2)
    assert async_result.get(timeout=120) == blocks


def test_an_unpicklable_item_after_the_window_starts_fails_the_map(make_pool):
    pool = make_pool(2)
    items = [b"w" * (3 * MIB) for _ in range(16)] + [threading.Lock()]
    with pytest.raises(Exception, match="item 16 of the input"):
        pool.map(h.identity, items, chunksize=1)
    assert pool.map(h.identity, items[:2]) == items[:2]


def test_imap_of_large_items_reads_fewer_ahead(make_pool):
    """By default imap reads 32 chunks per worker ahead at first, but only
    4 per worker once they pickle to a megabyte or more."""
    pool = make_pool(2)
    taken = []

    def blocks():
        for i in range(40):
            taken.append(i)
            yield bytes([i]) * (2 * MIB)

    it = pool.imap(h.identity, blocks())
    first = next(it)
    assert first[0] == 0
    time.sleep(0.5)  # let the feeder fill its window
    # 8 in flight, one being read, the one taken by the consumer; slack of 2.
    assert len(taken) <= 8 + 1 + 1 + 2, len(taken)
    rest = list(it)
    assert [r[0] for r in rest] == list(range(1, 40))


def test_imap_of_a_list_hands_a_window_over_at_once(make_pool):
    pool = make_pool(2)
    items = list(range(5000))
    assert list(pool.imap(h.square, items)) == [i * i for i in items]
    assert sorted(pool.imap_unordered(h.square, range(5000))) == [i * i for i in range(5000)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_forked_child_never_writes_into_the_parents_kept_memory(method):
    """The parent keeps the memfds its large arguments were pickled into and
    reuses them. A process forked from it (a user's os.fork(), a task that
    forks) inherits that list: its own large payloads must go elsewhere, or
    they would overwrite the parent's tasks in flight."""
    import os

    import ferropool

    ctx = ferropool.get_context(method)
    mine = [bytes([i]) * (3 * MIB) for i in range(6)]
    with ctx.Pool(2) as pool:
        assert pool.map(h.identity, mine, chunksize=1) == mine  # memfds kept now
        pid = os.fork()
        if pid == 0:  # the child: a pool of its own, other bytes
            code = 1
            try:
                theirs = [bytes([200 + i]) * (3 * MIB) for i in range(6)]
                with ferropool.get_context("spawn" if method == "fork" else method).Pool(2) as p:
                    for _ in range(3):
                        if p.map(h.identity, theirs, chunksize=1) != theirs:
                            break
                    else:
                        code = 0
            finally:
                os._exit(code)
        try:
            for _ in range(3):
                assert pool.map(h.identity, mine, chunksize=1) == mine
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
