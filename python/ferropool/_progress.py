"""``progress=`` on the maps: ``True`` (a tqdm bar when tqdm is installed, a
one-line counter on stderr otherwise) or a callable given ``(done, total)``,
``total`` None for input without a length.

Counting happens as outcomes arrive, in the pool's service thread (the
engine announces each outcome of a job with progress) and, at the end, in
the thread that takes the results: never on the engine thread. The engine
counts chunks; a chunk's items are known from the chunk sizes the map uses,
so the count is exact at the end and at most a chunk ahead meanwhile.
Without ``progress`` nothing here runs.
"""

from __future__ import annotations

import sys
import threading
import time

from . import _arguments

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    Report = Callable[[int, Optional[int]], Any]

# The stderr counter redraws at most this often (seconds).
COUNTER_INTERVAL = 0.1


class Progress:
    """One map's progress. `items_done(chunks)` turns a count of chunk
    outcomes into items; `finish` gives the last figure and closes."""

    def __init__(
        self,
        report: Report,
        total: Optional[int],
        items_done: Callable[[int], int],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._report = report
        self._total = total
        self._items_done = items_done
        self._close = close
        self._lock = threading.Lock()
        self._done = 0
        self._finished = False

    def chunks_arrived(self, chunks: int) -> None:
        with self._lock:
            if not self._finished:
                self._count(chunks)

    def finish(self, chunks: Optional[int] = None) -> None:
        """The map has ended, `chunks` chunk outcomes in (if given): the
        last figure, then the display is closed."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if chunks is not None:
                self._count(chunks)
            self._safely(self._close)

    def _count(self, chunks: int) -> None:
        done = self._items_done(chunks)
        if self._total is not None:
            done = min(done, self._total)
        if done > self._done:
            self._done = done
            self._safely(self._report, done, self._total)

    @staticmethod
    def _safely(call: Callable[..., Any], *args: Any) -> None:
        # A progress display that fails must not fail the map (nor stop the
        # service thread that counts for every map of the pool).
        try:
            call(*args)
        except Exception:
            import logging

            logging.getLogger("ferropool").exception("ferropool: reporting progress failed")


def make_progress(
    progress: Any, total: Optional[int], items_done: Callable[[int], int], what: str
) -> Optional[Progress]:
    """The `progress=` argument of a map call named `what` (None: none)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            counter = _StderrCounter(what)
            return Progress(counter.report, total, items_done, counter.close)
        bar = tqdm(total=total, desc=what, unit="task")

        def report(done: int, _total: Optional[int]) -> None:
            bar.update(done - bar.n)

        return Progress(report, total, items_done, bar.close)
    _arguments.check_progress(progress)
    return Progress(progress, total, items_done)


class _StderrCounter:
    """`done/total` on one line of stderr, redrawn in place."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last = 0.0
        self._line = ""

    def report(self, done: int, total: Optional[int]) -> None:
        self._line = f"{self._what}: {done}" + ("" if total is None else f"/{total}")
        now = time.monotonic()
        if now - self._last >= COUNTER_INTERVAL or done == total:
            self._last = now
            sys.stderr.write(f"\r{self._line}")
            sys.stderr.flush()

    def close(self) -> None:
        if self._line:
            sys.stderr.write(f"\r{self._line}\n")
            sys.stderr.flush()


def fixed_chunks(chunksize: int) -> Callable[[int], int]:
    """Items in `chunks` chunks of `chunksize` (the last may be short:
    callers cap the count by the total, or by what was read)."""
    return lambda chunks: chunks * chunksize


def growing_chunks(first: int, most: int) -> Callable[[int], int]:
    """Items in the first `chunks` chunks of sizes first, 2 * first, ...,
    up to `most` (a lazy map without chunksize, see pool._growing_chunks)."""

    def items(chunks: int) -> int:
        total, size = 0, first
        for i in range(chunks):
            if size == most:
                return total + (chunks - i) * most
            total += size
            size = min(size * 2, most)
        return total

    return items
