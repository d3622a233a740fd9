"""Payloads past the 32-bit lines: an argument or a result of 2049 MiB (more
than a signed 32-bit length holds) or 4097 MiB (more than an unsigned one
holds) arrives intact, as with the stdlib, and the pool goes on.

The bytes follow a pattern of period 251 (a prime, so no power-of-two cut can
hide): checking them at the 2**31 and 2**32 boundaries and at both ends finds
a wrapped length, a lost tail or a shifted stream without another copy of
gigabytes. All are marked `bigmem` (up to 16 GiB, about 5 minutes here,
mostly the kernel zeroing fresh pages): `make test-bigmem` runs them, and CI
runs that after `make test` (whose time they would grow by a fifth; the
64-bit header itself is tested in Rust, in src/engine/protocol.rs)."""

from __future__ import annotations

import gc

import ferropool
import pytest

MIB = 1 << 20
PERIOD = 251
BOUNDARIES = (0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32)


def size_above(mib: int) -> int:
    """The first multiple of the pattern's period at or above `mib` MiB."""
    return -(-mib * MIB // PERIOD) * PERIOD


def patterned(n: int) -> bytes:
    return bytes(range(PERIOD)) * (n // PERIOD)


def samples(data: bytes) -> tuple:
    """(length, [(offset, byte)] at the boundaries and the last byte)."""
    offsets = [o for o in BOUNDARIES if o < len(data)] + [len(data) - 1]
    return len(data), [(o, data[o]) for o in offsets]


def assert_intact(got_samples: tuple, n: int) -> None:
    length, pairs = got_samples
    assert length == n
    assert pairs == [(o, o % PERIOD) for o, _ in pairs]
    assert pairs[-1][0] == n - 1


def free_memory() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def needs_gib(gib: int):
    return pytest.mark.skipif(
        free_memory() < gib << 30, reason=f"needs {gib} GiB of available memory"
    )


def round_trip(pool, n: int) -> None:
    """An n-byte argument, then an n-byte result, then an ordinary task."""
    data = patterned(n)
    assert_intact(pool.apply(samples, (data,)), n)
    del data
    gc.collect()
    result = pool.apply(patterned, (n,))
    assert_intact(samples(result), n)
    del result
    assert pool.map(abs, range(-3, 3), chunksize=1) == [3, 2, 1, 0, 1, 2]


@pytest.mark.bigmem
@needs_gib(10)
@pytest.mark.timeout(600)
def test_2049_mib_through_the_executor():
    n = size_above(2049)
    with ferropool.ProcessPoolExecutor(1) as executor:
        assert_intact(executor.submit(samples, patterned(n)).result(), n)
        gc.collect()
        result = executor.submit(patterned, n).result()
        assert_intact(samples(result), n)
        del result
        assert list(executor.map(abs, [-1, 2])) == [1, 2]


@pytest.mark.bigmem
@needs_gib(16)
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mib", [2049, 4097])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_round_trips_under_every_start_method(method, mib):
    with ferropool.get_context(method).Pool(1) as pool:
        round_trip(pool, size_above(mib))
