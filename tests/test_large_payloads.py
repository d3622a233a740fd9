"""Large arguments and results (a megabyte and more) travel without extra
copies: the engine lends its buffer to the unpickling, then recycles it.
Results must be exactly what a copy would give, whatever happens around."""

from __future__ import annotations

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
