"""Large buffers in results (numpy arrays, any PEP 574 object) travel out of
band: the parent copies each into memory mapped for it, and the value is
built on that memory. The values must be exactly what in-band pickling
gives, writable when the original was, read-only when it was."""

from __future__ import annotations

import pickle

import _helpers as h
import pytest
from ferropool import _pickling

MIB = 1 << 20

pytestmark = pytest.mark.timeout(120)


def test_large_writable_buffers_go_out_of_band_and_come_back_equal():
    block = h.ZeroCopyBlock(bytearray(range(256)) * (2 * MIB // 256))
    small = h.ZeroCopyBlock(bytearray(b"s" * 100))
    out_of_band, data = _pickling.dumps_result({"big": block, "small": small, "n": 7})
    assert out_of_band
    got = _pickling.loads_out_of_band(memoryview(data))
    assert got["big"].tobytes() == block.tobytes()
    assert got["small"].tobytes() == small.tobytes()
    assert got["n"] == 7
    assert not got["big"].data.readonly, "writable, as the original"
    got["big"].data[0] = 255  # and really writable


def test_small_read_only_and_plain_results_stay_in_band():
    for value in (
        h.ZeroCopyBlock(bytearray(100)),
        h.ZeroCopyBlock(bytearray(2 * MIB), writable=False),
        bytearray(2 * MIB),
        b"b" * (2 * MIB),
        [1, 2, 3],
    ):
        out_of_band, data = _pickling.dumps_result(value)
        assert not out_of_band
        assert type(pickle.loads(data)) is type(value)


def test_a_truncated_out_of_band_payload_is_an_error_not_garbage():
    _, data = _pickling.dumps_result(h.ZeroCopyBlock(bytearray(2 * MIB)))
    with pytest.raises(pickle.UnpicklingError, match="wrong length"):
        _pickling.loads_out_of_band(memoryview(data)[:-1])


@pytest.mark.parametrize("writable", [True, False], ids=["writable", "read-only"])
def test_blocks_made_in_workers_come_back_whole(make_pool, writable):
    pool = make_pool(2)
    got = pool.starmap(h.block_of, [(3 * MIB + i, i, writable) for i in range(6)], chunksize=1)
    for i, block in enumerate(got):
        data = block.data
        assert (len(data), data[0], data[-1]) == (3 * MIB + i, i, i)
        assert data.readonly is not writable
    assert pool.apply(h.block_of, (MIB, 9)).tobytes() == b"\x09" * MIB


def test_blocks_round_trip_through_every_api(make_pool):
    pool = make_pool(2)
    blocks = [h.ZeroCopyBlock(bytearray([i]) * (2 * MIB)) for i in range(5)]
    want = [b.tobytes() for b in blocks]
    assert [b.tobytes() for b in pool.map(h.identity, blocks, chunksize=1)] == want
    assert [b.tobytes() for b in pool.imap(h.identity, blocks)] == want
    assert sorted(b.tobytes() for b in pool.imap_unordered(h.identity, blocks)) == want
    assert pool.map(h.block_info, blocks) == [(2 * MIB, i, i) for i in range(5)]


def test_blocks_through_the_executor():
    import ferropool

    with ferropool.ProcessPoolExecutor(2) as ex:
        blocks = [h.ZeroCopyBlock(bytearray([i]) * (2 * MIB)) for i in range(4)]
        got = list(ex.map(h.identity, blocks))
        assert [b.tobytes() for b in got] == [b.tobytes() for b in blocks]
        assert ex.submit(h.block_of, MIB, 3).result().tobytes() == b"\x03" * MIB


def test_numpy_arrays_come_back_equal_and_writable(make_pool):
    import numpy as np

    pool = make_pool(2)
    arrays = [
        np.arange(MIB, dtype=np.int64),
        np.asfortranarray(np.arange(MIB // 4, dtype=np.float64).reshape(512, -1)),
        np.arange(3 * MIB, dtype=np.uint8)[::3],  # not contiguous: pickled in band
        np.zeros(10),
    ]
    got = pool.map(h.identity, arrays, chunksize=1)
    for a, b in zip(arrays, got):
        assert b.dtype == a.dtype and b.shape == a.shape
        assert (a == b).all()
        assert b.flags.writeable
    assert got[1].flags.f_contiguous, "Fortran order kept"
    got[0][0] = -1  # writable memory of its own
    assert got[0][0] == -1 and arrays[0][0] == 0
