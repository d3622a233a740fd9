"""Results made only of numbers travel packed, not pickled
(src/python/packed.rs): a list of exact ints within 64 bits, or of exact
floats, comes back equal and of the same types; anything else (bools and
other subclasses, big ints, mixed lists) is pickled as before. The parent
treats the packed bytes as untrusted: a malformed payload fails its task
with a clear error and the pool goes on."""

from __future__ import annotations

import contextlib
import enum
import math
import struct

import ferropool
import pytest
from _helpers import identity, int_list, square
from ferropool import _native, _worker
from ferropool._errors import TaskTransferError

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class Colour(enum.IntEnum):
    RED = 1
    BLUE = 2


class MyFloat(float):
    pass


def _same(a, b):
    """Equal, item types equal, NaNs matched by bits."""
    assert type(a) is type(b) is list and len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y), (x, y)
        if isinstance(x, float) and math.isnan(x):
            assert struct.pack("<d", x) == struct.pack("<d", y)
        else:
            assert x == y and (
                not isinstance(x, float) or math.copysign(1, x) == math.copysign(1, y)
            )


@pytest.mark.parametrize(
    "values",
    [
        [0, 1, -1, 255, 256, 2**30, -(2**31), I64_MAX, I64_MIN] * 3,
        [0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 1e308, 5e-324] * 3,
        [struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]] * 20,
    ],
    ids=["ints", "floats", "nan-payload"],
)
def test_pack_round_trip_keeps_values_and_bits(values):
    packed = _native.pack_numbers(values)
    assert packed is not None and len(packed) == 1 + 8 * len(values)
    _same(_native.unpack_numbers(packed), values)


@pytest.mark.parametrize(
    "values",
    [
        [],
        [True] * 20,
        [1] * 19 + [True],
        [Colour.RED] * 20,
        [MyFloat(1.0)] * 20,
        [1] * 19 + [2.0],
        [1.0] * 19 + [2],
        [1] * 19 + [I64_MAX + 1],
        [I64_MIN - 1] + [1] * 19,
        [1] * 19 + [None],
        ["a"] * 20,
    ],
    ids=[
        "empty",
        "bools",
        "int-then-bool",
        "intenum",
        "float-subclass",
        "int-then-float",
        "float-then-int",
        "past-i64-max",
        "past-i64-min",
        "int-then-none",
        "strings",
    ],
)
def test_anything_but_plain_ints_or_floats_is_not_packed(values):
    assert _native.pack_numbers(values) is None


@pytest.mark.parametrize(
    "payload",
    [b"", b"q", b"q1234567", b"x" + bytes(8), b"d" + bytes(12)],
    ids=["empty", "kind-only", "short-word", "unknown-kind", "ragged"],
)
def test_malformed_packed_bytes_are_refused(payload):
    if payload == b"q":
        assert _native.unpack_numbers(payload) == []  # a kind and no words: an empty list
        return
    with pytest.raises(ValueError, match="malformed packed result"):
        _native.unpack_numbers(payload)


def _values_by_kind():
    return {
        "ints": list(range(-50, 1000)) + [I64_MAX, I64_MIN],
        "floats": [i / 7 for i in range(1000)] + [math.inf, -0.0, math.nan],
        "bools": [i % 3 == 0 for i in range(1000)],
        "intenums": [Colour.RED, Colour.BLUE] * 300,
        "big-ints": [2**70 + i for i in range(300)],
        "mixed": [1, 2.5, "x", None, True] * 200,
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(_values_by_kind()))
def test_map_results_come_back_as_the_stdlib_gives_them(fpool, kind):
    values = _values_by_kind()[kind]
    for chunksize in (None, 1, 17, 1000):
        _same(fpool.map(identity, values, chunksize), values)
    _same(list(fpool.imap(identity, values, 64)), values)
    # repr tells types apart too (1 from 1.0 and True, -0.0 from 0.0).
    unordered = list(fpool.imap_unordered(identity, values, 64))
    assert sorted(map(repr, unordered)) == sorted(map(repr, values))
    _same(fpool.starmap(identity, [(v,) for v in values], 50), values)


@pytest.mark.timeout(60)
def test_a_long_list_returned_by_one_task_comes_back_whole(fpool):
    assert fpool.apply(int_list, (100_000,)) == list(range(100_000))
    # Large enough to be lent to Python rather than copied (LargePayload).
    big = fpool.apply(int_list, (400_000,))
    assert big == list(range(400_000)) and type(big[-1]) is int


@pytest.mark.timeout(60)
def test_executor_map_of_numbers():
    with ferropool.ProcessPoolExecutor(2) as ex:
        assert list(ex.map(square, range(3000), chunksize=100)) == [i * i for i in range(3000)]
        assert ex.submit(int_list, 5000).result() == list(range(5000))


def _forge_malformed(result):
    """Stands in for the worker's encoder: packed bytes of a ragged length."""
    return _native.OK_PACKED, b"q" + bytes(13)


@contextlib.contextmanager
def _pool_whose_workers_encode_with(monkeypatch, encode):
    """A fork pool whose workers send what `encode` makes of each result:
    patched before the fork, so only that pool's workers have it."""
    monkeypatch.setattr(_worker, "_dump_value", encode)
    pool = ferropool.get_context("fork").Pool(2)
    monkeypatch.undo()
    try:
        yield pool
    finally:
        pool.terminate()


@pytest.mark.timeout(60)
def test_a_malformed_packed_result_fails_its_task_and_the_pool_goes_on(monkeypatch):
    with _pool_whose_workers_encode_with(monkeypatch, _forge_malformed) as pool:
        with pytest.raises(TaskTransferError, match="could not be unpacked in the parent") as info:
            pool.map(identity, range(100), 10)
        assert "malformed packed result (14 bytes)" in str(info.value)
        with pytest.raises(TaskTransferError):
            pool.apply(int_list, (50,))
    # A pool of unpatched workers is unaffected.
    with ferropool.Pool(2) as pool:
        assert pool.map(identity, range(100), 10) == list(range(100))


def _forge_one_too_many(result):
    """Stands in for the worker's encoder: a well-formed packed chunk with
    one result more than the chunk had items."""
    return _native.OK_PACKED, _native.pack_numbers(list(range(len(result) + 1)))


@pytest.mark.timeout(60)
def test_a_packed_chunk_of_the_wrong_size_fails_the_map(monkeypatch):
    with _pool_whose_workers_encode_with(monkeypatch, _forge_one_too_many) as pool:
        with pytest.raises(RuntimeError, match=r"chunk \d+ came back with 21 results for 20 items"):
            pool.map(identity, range(100), 20)


def test_unpacking_into_a_list_writes_only_a_chunk_of_the_right_size():
    target = [None] * 10
    packed = _native.pack_numbers(list(range(100, 120)))
    assert _native.unpack_numbers_into(packed, target, 0, 10) == 20  # held 20: nothing written
    assert target == [None] * 10
    packed = _native.pack_numbers([1.5] * 16)
    target = [None] * 20
    assert _native.unpack_numbers_into(packed, target, 4, 16) == 16
    assert target == [None] * 4 + [1.5] * 16
    with pytest.raises(ValueError, match="no slots 8..24 in a list of 20"):
        _native.unpack_numbers_into(packed, target, 8, 16)
    with pytest.raises(ValueError, match="malformed packed result"):
        _native.unpack_numbers_into(b"q" + bytes(5), target, 0, 0)
