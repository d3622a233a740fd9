"""`progress=` on the maps: a callable gets (done, total) as outcomes arrive;
True shows a tqdm bar, or a counter on stderr without tqdm."""

from __future__ import annotations

import textwrap
import threading
import time

import _helpers as h
import ferropool
import pytest
from _support import run_script

pytestmark = pytest.mark.timeout(60)


class Seen:
    """A progress callable that records what it was told, and where."""

    def __init__(self) -> None:
        self.calls: list = []
        self.threads: set = set()
        self.lock = threading.Lock()

    def __call__(self, done, total) -> None:
        with self.lock:
            self.calls.append((done, total))
            self.threads.add(threading.current_thread().name)

    def check(self, done, total) -> None:
        assert self.calls, "never told"
        assert self.calls[-1] == (done, total), self.calls[-3:]
        counts = [d for d, _ in self.calls]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
        assert all(t == total for _, t in self.calls)
        # The service thread counts as outcomes arrive; the caller's thread
        # gives the last figure if it takes the results first.
        # (ferropool.dask: Dask's callback threads, which deliver outcomes.)
        service = {"ferropool-service", "ferropool-executor-service"}
        others = {t for t in self.threads if not t.startswith("Dask-Callback-Thread")}
        assert others <= service | {threading.current_thread().name}


def _numbers(n):
    yield from range(n)


def test_map_and_starmap_report_every_item(make_pool):
    pool = make_pool(2)
    seen = Seen()
    assert pool.map(h.square, range(23), chunksize=5, progress=seen) == [
        x * x for x in range(23)
    ]
    seen.check(23, 23)
    seen = Seen()
    assert pool.starmap(h.add, [(i, i) for i in range(10)], progress=seen) == [
        2 * i for i in range(10)
    ]
    seen.check(10, 10)


def test_progress_arrives_while_the_map_runs(xpool):
    seen = Seen()
    result = xpool.map_async(h.sleep_then, [(0.05 * (i % 2)) for i in range(20)], 1, progress=seen)
    # Counted before the map is done, by the service thread.
    deadline = time.monotonic() + 30
    while not seen.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen.calls and seen.calls[0][0] < 20
    result.get(timeout=30)
    seen.check(20, 20)


def test_lazy_inputs_report_no_total(xpool):
    seen = Seen()
    assert list(xpool.imap(h.square, _numbers(30), chunksize=4, progress=seen)) == [
        x * x for x in range(30)
    ]
    seen.check(30, None)
    seen = Seen()
    got = sorted(xpool.imap_unordered(h.square, _numbers(7), progress=seen))
    assert got == [x * x for x in range(7)]
    seen.check(7, None)
    seen = Seen()  # no chunksize: chunks of 1, 2, 4, ... items
    assert xpool.map_async(h.square, _numbers(100), progress=seen).get(timeout=30) == [
        x * x for x in range(100)
    ]
    seen.check(100, None)


def test_map_async_without_get_reports_the_end(xpool):
    seen = Seen()
    xpool.map_async(h.square, range(12), 3, progress=seen).wait(30)
    deadline = time.monotonic() + 30
    while (not seen.calls or seen.calls[-1] != (12, 12)) and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.check(12, 12)


def test_executor_map_reports_progress(method):
    ctx = ferropool.get_context(method)
    with ferropool.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        seen = Seen()
        assert list(ex.map(h.add, range(9), range(9), chunksize=2, progress=seen)) == [
            2 * i for i in range(9)
        ]
        seen.check(9, 9)
        seen = Seen()
        assert list(ex.map(h.square, _numbers(5), progress=seen)) == [0, 1, 4, 9, 16]
        seen.check(5, None)
        # Through an overridden submit too (one chunk a future).
        plain_submit = ex.submit
        ex.submit = lambda fn, *args: plain_submit(fn, *args)
        seen = Seen()
        assert list(ex.map(h.square, range(6), chunksize=3, progress=seen)) == [
            x * x for x in range(6)
        ]
        assert seen.calls[-1] == (6, 6)


def test_a_failing_progress_callable_does_not_fail_the_map(xpool, caplog):
    def broken(done, total):
        raise RuntimeError("display broke")

    assert xpool.map(h.square, range(5), progress=broken) == [0, 1, 4, 9, 16]
    assert "reporting progress failed" in caplog.text


@pytest.mark.parametrize("bad", ["yes", 3])
def test_a_bad_progress_is_refused(xpool, bad):
    with pytest.raises(TypeError, match="progress must be True, False, None or a callable"):
        xpool.map(h.square, range(3), progress=bad)
    with ferropool.ProcessPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="progress must be"):
            ex.map(h.square, range(3), progress=bad)


def test_progress_false_or_none_shows_nothing(xpool, capsys):
    assert xpool.map(h.square, range(3), progress=False) == [0, 1, 4]
    assert xpool.map(h.square, range(3), progress=None) == [0, 1, 4]
    assert capsys.readouterr().err == ""


BAR = textwrap.dedent(
    """
    import sys
    if sys.argv[2] == "without tqdm":
        sys.modules["tqdm"] = None
    import ferropool
    from _helpers import square

    if __name__ == "__main__":
        with ferropool.get_context(sys.argv[1]).Pool(2) as pool:
            assert pool.map(square, range(40), progress=True) == [x * x for x in range(40)]
            assert list(pool.imap(square, iter(range(6)), progress=True)) == [
                x * x for x in range(6)
            ]
        print("done")
    """
)


def test_progress_true_draws_a_tqdm_bar(tmp_path):
    done = run_script(tmp_path, BAR, "fork", "with tqdm")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    lines = done.stderr.replace("\r", "\n").split("\n")
    assert any(line.startswith("map: 100%") and "40/40" in line for line in lines), done.stderr
    assert any(line.startswith("imap: 6") for line in lines), done.stderr


def test_progress_true_without_tqdm_counts_on_stderr(tmp_path):
    done = run_script(tmp_path, BAR, "spawn", "without tqdm")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.replace("\r", "\n").split("\n")
    assert "map: 40/40" in lines, done.stderr
    assert "imap: 6" in lines, done.stderr
