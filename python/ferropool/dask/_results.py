"""What the cluster pool hands back: the API of the stdlib's AsyncResult,
MapResult and IMapIterator, filled from Dask's callback threads. A caller
that waits and is interrupted (Ctrl-C) cancels the job's chunks on the
cluster before the KeyboardInterrupt goes on."""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional

    from .._progress import Progress
    from ._session import Job

log = logging.getLogger("ferropool.dask")


# Waits go in slices this long, so that a Ctrl-C (KeyboardInterrupt) is
# raised at once even where the signal woke another thread.
WAIT_SLICE = 0.05


def wait_for(
    cond: threading.Condition, ready: Callable[[], bool], timeout: Optional[float]
) -> bool:
    """`cond.wait_for(ready, timeout)` (`cond` held), in slices."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not ready():
        if deadline is None:
            cond.wait(WAIT_SLICE)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cond.wait(min(left, WAIT_SLICE))
    return True


def _timeout_error() -> BaseException:
    from multiprocessing import TimeoutError

    return TimeoutError()


def _run_callback(callback: Optional[Callable[[Any], Any]], value: Any) -> None:
    if callback is not None:
        try:
            callback(value)
        except Exception:
            log.exception("ferropool.dask: a result callback raised")


class AsyncResult:
    """The result of ``apply_async`` (and the base of ``MapResult``)."""

    def __init__(
        self,
        job: Job,
        callback: Optional[Callable[[Any], Any]],
        error_callback: Optional[Callable[[BaseException], Any]],
    ) -> None:
        self._job = job
        self._callback = callback
        self._error_callback = error_callback
        self._done = threading.Condition()
        self._ready = False
        self._settling = False
        self._success = False
        self._value: Any = None

    def __repr__(self) -> str:
        state = "ready" if self.ready() else "pending"
        return f"<{type(self).__name__} {self._job.key} {state}>"

    def ready(self) -> bool:
        return self._ready

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: Optional[float] = None) -> None:
        try:
            with self._done:
                wait_for(self._done, self.ready, timeout)
        except KeyboardInterrupt:
            self._job.cancel()
            raise

    def get(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise _timeout_error()
        if self._success:
            return self._value
        raise self._value

    def _settle(self, success: bool, value: Any) -> None:
        """Once: runs the callback, then the result counts as ready."""
        with self._done:
            if self._ready or self._settling:
                return
            self._settling = True
        self._success, self._value = success, value
        _run_callback(self._callback if success else self._error_callback, value)
        with self._done:
            self._ready = True
            self._done.notify_all()


ApplyResult = AsyncResult


class MapResult(AsyncResult):
    """``map_async``'s result: chunks land as they come; the first failure
    is the outcome (the rest of the job is cancelled), as in the stdlib."""

    def __init__(
        self,
        job: Job,
        callback: Any,
        error_callback: Any,
        length: int,
        chunksize: int,
        progress: Optional[Progress] = None,
    ) -> None:
        super().__init__(job, callback, error_callback)
        self._progress = progress
        self._arrived = 0
        self._lock = threading.Lock()
        self._chunks: List[Any] = [None] * (-(-length // chunksize) if length else 0)
        self._left = len(self._chunks)
        if not self._left:
            # As the stdlib's MapResult: ready at once, the callback never called.
            self._success, self._value, self._ready = True, [], True

    def chunk_done(self, index: int, success: bool, value: Any) -> None:
        with self._lock:
            if self._ready or self._settling or self._chunks is None:
                return
            if not success:
                self._chunks = None  # type: ignore[assignment]
                failed = True
            else:
                self._chunks[index] = value
                self._left -= 1
                failed = False
                done = self._left == 0
            self._arrived += 1
            arrived = self._arrived
        if self._progress is not None:
            self._progress.chunks_arrived(arrived)
            if failed or done:
                self._progress.finish()
        if failed:
            self._job.cancel()
            self._settle(False, value)
        elif done:
            self._settle(True, list(itertools.chain.from_iterable(self._chunks)))


def items_as_counted(items: int) -> int:
    """The `items_done` of an IMapIterator's progress: it counts the items
    of the chunks that arrived itself (a lazy input's last chunk is short)."""
    return items


class IMapIterator:
    """``imap`` and ``imap_unordered``: a feeder thread reads the input a
    chunk at a time and keeps at most `window` chunks submitted and not yet
    consumed; results come in input order (`ordered`) or as they complete.
    A chunk that failed raises its exception at its place, once; iteration
    then goes on with the next chunk, as the stdlib's does."""

    def __init__(
        self,
        job: Job,
        mode: int,
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
        window: int,
        timeout_error: Callable[[], BaseException] = _timeout_error,
        progress: Optional[Progress] = None,
    ) -> None:
        self._job = job
        self._progress = progress
        # As the stdlib's: with chunks, the iterator ends after the failing
        # chunk raised; one item per chunk, iteration goes on after it.
        self._end_at_failure = chunksize > 1
        self._ordered = ordered
        self._timeout_error = timeout_error
        self._cond = threading.Condition()
        self._room = threading.Semaphore(window)
        self._arrived: Dict[int, tuple[bool, Any]] = {}
        # Chunks arrived and not yet taken, in completion order (unordered).
        self._order: Deque[int] = collections.deque()
        self._expected = 0  # chunks made from the input so far
        self._sizes: Dict[int, int] = {}  # items per chunk not yet arrived
        self._items_arrived = 0
        self._input_done = False
        self._next = 0  # the next chunk to hand out (ordered)
        self._taken = 0  # chunks handed out
        self._items: Iterator[Any] = iter(())
        self._stopped = False
        self._unbounded = False
        self._feeder = threading.Thread(
            target=self._feed,
            args=(mode, iter(iterable), chunksize),
            name=f"{job.key}-feeder",
            daemon=True,
        )
        job.session.feeders.add(self)
        self._feeder.start()

    def feeding(self) -> bool:
        """Whether the feeder thread still reads input or submits."""
        return self._feeder.is_alive()

    def unbound(self) -> None:
        """No more window: the rest of the input is submitted without waiting
        for the consumer (the pool is closing and will be joined)."""
        self._unbounded = True
        self._room.release()

    # ----- the feeder thread ---------------------------------------------

    def _feed(self, mode: int, items: Iterator[Any], chunksize: int) -> None:
        serializer = self._job.session.serializer
        first = 0
        for index in itertools.count():
            while not (self._unbounded or self._room.acquire(timeout=0.5)):
                if self._stopped:
                    return
            if self._stopped:
                return
            try:
                chunk = list(itertools.islice(items, chunksize))
            except BaseException as e:  # the input itself raised: its place fails
                self._count_chunk(0)
                self._arrive(index, False, e, last=True)
                return
            if not chunk:
                self._room.release()
                break
            self._count_chunk(len(chunk))
            try:
                payload = serializer.chunk(chunk, first)
            except BaseException as e:
                self._arrive(index, False, e)
            else:
                try:
                    self._job.run(mode, payload, functools.partial(self._arrive, index))
                except BaseException as e:  # the cluster is gone: no chunk will come
                    self._arrive(index, False, e, last=True)
                    return
            first += len(chunk)
        with self._cond:
            self._input_done = True
            self._cond.notify_all()

    def _count_chunk(self, items: int) -> None:
        with self._cond:
            self._sizes[self._expected] = items
            self._expected += 1

    def _arrive(self, index: int, success: bool, value: Any, last: bool = False) -> None:
        with self._cond:
            self._arrived[index] = (success, value)
            if not self._ordered:
                self._order.append(index)
            if last:
                self._input_done = True
            self._cond.notify_all()
            self._items_arrived += self._sizes.pop(index, 0)
            arrived = self._items_arrived
        if self._progress is not None:
            self._progress.chunks_arrived(arrived)

    # ----- the consumer ----------------------------------------------------

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        while True:
            for item in self._items:
                return item
            success, value = self._next_chunk(timeout)
            self._room.release()
            if not success:
                if self._end_at_failure:
                    self.stop()
                raise value
            self._items = iter(value)

    def _next_chunk(self, timeout: Optional[float]) -> tuple[bool, Any]:
        if self._stopped and self._end_at_failure:
            raise StopIteration
        try:
            with self._cond:
                found = wait_for(self._cond, self._chunk_ready, timeout)
                if not found:
                    raise self._timeout_error()
                if self._ordered:
                    if self._next not in self._arrived:
                        self._finish()
                    outcome = self._arrived.pop(self._next)
                    self._next += 1
                else:
                    if not self._order:
                        self._finish()
                    outcome = self._arrived.pop(self._order.popleft())
                self._taken += 1
                return outcome
        except KeyboardInterrupt:
            self.stop()
            raise

    def _chunk_ready(self) -> bool:
        if self._ordered:
            ready = self._next in self._arrived
        else:
            ready = bool(self._order)
        return ready or (self._input_done and self._taken >= self._expected)

    def _finish(self) -> Any:
        self._stopped = True
        if self._progress is not None:
            self._progress.finish()
        raise StopIteration

    def stop(self) -> None:
        """Stops reading input and cancels the chunks in flight."""
        self._stopped = True
        self._job.cancel()
