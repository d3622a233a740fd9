"""The read-ahead window of lazy maps: a user's buffersize stays fixed; the
default grows while results are small and shrinks for good once payloads
are large."""

import time

import _fault_helpers as fh
import pytest
from ferropool._feeding import LARGE_PAYLOAD, SMALL_RESULT, Window

pytestmark = pytest.mark.timeout(60)


def test_a_fixed_window_never_changes():
    w = Window(3)
    w.consumed(100, 10)
    assert w.limit == 3
    assert not w.saw_large_payload()
    w.consumed(100, LARGE_PAYLOAD)
    assert w.limit == 3


def test_the_default_window_doubles_per_window_of_small_results_up_to_its_most():
    w = Window(8, most=32, large=2)
    w.consumed(7, 100)
    assert w.limit == 8, "not a whole window consumed yet"
    w.consumed(1, 100)
    assert w.limit == 16
    w.consumed(16, 100)
    assert w.limit == 32
    w.consumed(1000, 100)
    assert w.limit == 32


def test_results_that_are_not_small_stop_the_growth():
    w = Window(8, most=32, large=2)
    w.consumed(8, SMALL_RESULT)
    assert w.limit == 8
    w.consumed(100, 10)
    assert w.limit == 8, "no growth after a result that was not small"


def test_a_large_payload_shrinks_the_default_window_for_good():
    w = Window(8, most=32, large=2)
    w.consumed(8, 10)
    assert w.limit == 16
    w.consumed(1, LARGE_PAYLOAD)
    assert w.limit == 2
    w.consumed(1000, 10)
    assert w.limit == 2
    assert not w.saw_large_payload(), "already small: nothing changes"


def test_a_large_input_chunk_shrinks_the_default_window():
    w = Window(8, most=32, large=2)
    assert w.saw_large_payload()
    assert w.limit == 2


@pytest.mark.parametrize("ordered", [True, False], ids=["imap", "imap_unordered"])
def test_grown_window_still_bounds_what_is_read_ahead(ordered, gpool):
    """After many small results the window has grown, but the input is still
    read lazily: at most the largest window (256 chunks per worker) ahead."""
    src = fh.CountingRange(10**6)
    imap = gpool.imap if ordered else gpool.imap_unordered
    it = imap(fh.square, src)
    consumed = 3000
    got = [next(it) for _ in range(consumed)]
    if ordered:
        assert got == [i * i for i in range(consumed)]
    time.sleep(0.5)
    first = src.taken
    time.sleep(0.5)
    taken = max(first, src.taken)
    first_window, most = 32 * 2, 256 * 2  # gpool has 2 workers
    assert taken > consumed + first_window, f"the window did not grow: read {taken}"
    assert taken <= consumed + most + 16, f"read {taken} after {consumed} consumed"
    more = [next(it) for _ in range(10)]
    if ordered:
        assert more == [i * i for i in range(consumed, consumed + 10)]
