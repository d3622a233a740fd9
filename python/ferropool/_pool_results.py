"""The objects ``Pool`` hands back: ``AsyncResult`` (``ApplyResult``),
``MapResult`` and ``IMapIterator``. Each wraps one engine job; outcomes are
unpickled in the thread that asks for them, once."""

from __future__ import annotations

import collections
import threading
import time
from multiprocessing import TimeoutError as MPTimeoutError

from ._aio import until
from ._decoding import decode, decode_packed_into
from ._feeding import Window, feeder_min_room
from ._lifecycle import in_service_thread, pools_at_exit
from ._native import LOCAL_ERROR, OK_PACKED

# `typing`, `logging` and `_errors` are imported where needed (start-up
# time of a short script, see _decoding).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Deque, Dict, Generator, List, NoReturn, Optional

    from ._progress import Progress

__all__ = ["ApplyResult", "AsyncResult", "IMapIterator", "MapResult"]


def _stop_here_at_exit() -> None:
    """Once the exit hook has stopped the pools nobody closed, a daemon
    thread still waiting on one of them stays asleep until the process ends:
    the stdlib's waits never return then, and print nothing. Its outcome is
    not decoded: the module of an error may no longer be importable then
    (`concurrent.futures.process` cannot be imported once threading has
    begun shutting down)."""
    if (
        pools_at_exit.exiting
        and threading.current_thread().daemon
        and not in_service_thread()  # the exit hook waits for those
    ):
        threading.Event().wait()


def _raise(error: BaseException) -> NoReturn:
    """Raises a task's error where the caller waits (see _stop_here_at_exit)."""
    _stop_here_at_exit()
    raise error


class ApplyResult:
    """The result of ``apply_async`` (``multiprocessing.pool.AsyncResult``)."""

    # A map's progress display (see _progress), closed once the map is done.
    _progress: Optional[Progress] = None

    def __init__(self, pool: Any, job: Any, callback: Any, error_callback: Any) -> None:
        self._pool: Optional[Any] = pool
        self._job = job
        self._callback = callback
        self._error_callback = error_callback
        self._lock = threading.Lock()
        self._outcome: Optional[tuple[Any, ...]] = None  # (success, value or exception)
        # Exceptions of tasks that never left the parent, by task index
        # (input that raised or could not be pickled: see _feeding.Reader).
        self._local_errors: Dict[int, BaseException] = {}
        if callback is not None or error_callback is not None:
            pool._cache[job.id] = self

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"

    def ready(self) -> bool:
        """Whether the call has finished (its callback, if any, has run)."""
        return bool(self._job.ready())

    def __await__(self) -> Generator[Any, None, Any]:
        """``await result``: its value (or its exception raised), without
        blocking the event loop."""
        pool = self._pool  # None once resolved: then it is ready
        if pool is not None and not self.ready():
            yield from until(pool._waiters, self._job, self.ready).__await__()
        return self.get()

    def successful(self) -> bool:
        """Whether the call returned without raising; ValueError if it
        has not finished."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._resolve()[0])

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits until the call has finished, or `timeout` seconds."""
        self._job.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The call's value, once it has finished; its exception is raised
        here. ``multiprocessing.TimeoutError`` after `timeout` seconds."""
        if not self._job.wait(timeout):
            raise MPTimeoutError
        success, value = self._resolve()
        if success:
            return value
        _raise(value)

    def _resolve(self) -> tuple[Any, ...]:
        with self._lock:
            if self._outcome is None:
                self._outcome = self._collect(self._job.take())
                self._pool = None
                if self._progress is not None:
                    self._progress.finish(self._job.counts()[0])
            return self._outcome

    def _decode(self, index: int, status: int, payload: bytes) -> tuple[Any, ...]:
        _stop_here_at_exit()
        if status == LOCAL_ERROR:
            return False, self._local_errors.pop(index)
        return decode(status, payload)

    def _collect(self, outcomes: List[tuple[Any, ...]]) -> tuple[Any, ...]:
        for index, status, payload in outcomes:
            return self._decode(index, status, payload)
        return False, RuntimeError("ferropool: the task finished without a result")

    def _complete_with_callbacks(self) -> None:
        """Service thread: run the callback, then let waiters see the result."""
        try:
            success, value = self._resolve()
            if success and self._callback is not None:
                self._callback(value)
            elif not success and self._error_callback is not None:
                self._error_callback(value)
        except BaseException:
            import logging

            logging.getLogger("ferropool").exception(
                "ferropool: a result callback raised; the result is still delivered"
            )
        finally:
            self._job.mark_ready()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: the chunks' results in
    input order; on failure, the first exception that arrived (as the stdlib,
    only once every chunk is done).

    Each chunk's results go straight into the result list as they are
    unpickled, as the stdlib does: in their place when the input's length is
    known (`length` items in chunks of `chunksize`), else appended in chunk
    order (chunks may differ in size; only the few that arrive ahead of an
    earlier one wait). Nothing per task is kept besides the results. A
    ``get()`` without callbacks takes chunks as they arrive, while the
    workers still run; with callbacks the service thread does (see
    `absorb_arrived`)."""

    def __init__(
        self,
        pool: Any,
        job: Any,
        callback: Any,
        error_callback: Any,
        length: Optional[int] = None,
        chunksize: int = 1,
    ) -> None:
        super().__init__(pool, job, callback, error_callback)
        self._sized = length is not None
        self._value: Optional[List[Any]] = []
        # A sized input's list of places is made once the chunks are on their
        # way (see _make_room): making it costs the caller a while (~0.25 ms
        # for 200,000 items), which the first chunks must not wait for.
        self._room_for = length
        self._chunksize = chunksize
        # Input without a length: chunks that came before an earlier one.
        self._early: Dict[int, Any] = {}
        self._next_chunk = 0
        self._failure: Optional[BaseException] = None

    def get(self, timeout: Optional[float] = None) -> Any:
        if self._callback is None and self._error_callback is None:
            self._absorb_as_they_come(timeout)
        return super().get(timeout)

    def _absorb_as_they_come(self, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._make_room()  # while the workers run the first chunks
            while self._outcome is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    outcomes = self._job.next_outcomes(left)
                except StopIteration:
                    return
                if outcomes is None:
                    raise MPTimeoutError
                self._absorb(outcomes)

    def absorb_arrived(self) -> None:
        """Service thread, while a map with callbacks runs: takes the
        outcomes that have arrived, so none pile up in the engine."""
        with self._lock:
            if self._outcome is None:
                self._absorb(self._job.take())

    def _make_room(self) -> None:
        """The result list of a sized input: one place per item."""
        if self._room_for is not None:
            if self._value is not None:  # None: failed already
                self._value = [None] * self._room_for
            self._room_for = None

    def _absorb(self, outcomes: List[tuple[Any, ...]]) -> None:
        self._make_room()
        for index, status, payload in outcomes:
            if status == OK_PACKED and self._sized and self._value is not None:
                success, value = self._fill(index, payload)
            else:
                success, value = self._decode(index, status, payload)
                if success and self._value is not None:
                    success, value = self._add(index, value)
            if not success and self._failure is None:
                # As the stdlib: the first failure is the outcome; the
                # results are dropped.
                self._failure = value
                self._value = None
                self._early = {}

    def _chunk_slots(self, index: int) -> tuple[int, int]:
        """Where chunk `index` of a sized input goes: (start, size); size
        is negative for a chunk past the input's end."""
        assert self._value is not None
        start = index * self._chunksize
        return start, min(self._chunksize, len(self._value) - start)

    def _wrong_size(self, index: int, held: int, size: int) -> tuple[Any, ...]:
        return False, RuntimeError(
            f"ferropool: chunk {index} came back with {held} results for {max(size, 0)} items"
        )

    def _fill(self, index: int, payload: Any) -> tuple[Any, ...]:
        """A packed chunk of numbers straight into its place (no list is
        made for the chunk first)."""
        assert self._value is not None
        start, size = self._chunk_slots(index)
        if size < 0:  # a chunk past the end: refused as _add refuses it
            success, value = self._decode(index, OK_PACKED, payload)
            return self._add(index, value) if success else (success, value)
        _stop_here_at_exit()
        success, held = decode_packed_into(payload, self._value, start, max(size, 0))
        if success and held != size:
            return self._wrong_size(index, held, size)
        return success, held

    def _add(self, index: int, chunk: Any) -> tuple[Any, ...]:
        assert self._value is not None
        if type(chunk) is not list:
            chunk = list(chunk)
        if not self._sized:
            self._early[index] = chunk
            while self._next_chunk in self._early:
                self._value += self._early.pop(self._next_chunk)
                self._next_chunk += 1
            return True, None
        # A chunk whose size is not its input's is a failure: the slice
        # assignment would shift every later result.
        start, size = self._chunk_slots(index)
        if size < 0 or len(chunk) != size:
            return self._wrong_size(index, len(chunk), size)
        self._value[start : start + size] = chunk
        return True, None

    def _collect(self, outcomes: List[tuple[Any, ...]]) -> tuple[Any, ...]:
        self._absorb(outcomes)
        if self._failure is not None:
            return False, self._failure
        result, self._value = self._value, None
        if self._early:  # not reached: a missing chunk is a failure
            return False, RuntimeError(f"ferropool: chunk {self._next_chunk} never came back")
        return True, result


def _changed_since(job: Any, seen: tuple[Any, ...]) -> Any:
    """Whether `job` has news since its state was `seen`."""
    return lambda: (job.counts(), job.complete()) != seen


class IMapIterator:
    """The iterator ``imap`` and ``imap_unordered`` return."""

    _progress: Optional[Progress] = None  # see ApplyResult._progress

    def __init__(
        self, pool: Any, job: Any, ordered: bool, chunked: bool, window: Optional[Window] = None
    ) -> None:
        self._pool: Optional[Any] = pool
        self._job = job
        self._ordered = ordered
        self._chunked = chunked
        self._pending: Dict[int, tuple[Any, ...]] = {}
        # Outcomes taken from the engine and not yet looked at (taken in batches).
        self._arrived: Deque[tuple[Any, ...]] = collections.deque()
        self._next_index = 0
        self._buffer: List[Any] = []
        self._stopped = False
        # Chunks consumed whose place in the read-ahead window is not given
        # back yet: given back as many at a time as the feeder waits for
        # (feeder_min_room), and always before waiting for more. The largest
        # of their pickled results tells the window whether it may grow.
        self._unreleased = 0
        self._largest_unreleased = 0
        self._window = window
        # Exceptions of tasks that never left the parent, by index (see _feeding.Reader).
        self._local_errors: Dict[int, BaseException] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> IMapIterator:
        return self

    def __aiter__(self) -> IMapIterator:
        """``async for``: results as they arrive, without blocking the
        event loop."""
        if self._pool is None and not self._stopped:
            raise TypeError("only a Pool's imap iterators can be used with async for")
        return self

    async def __anext__(self) -> Any:
        job = self._job
        while True:
            seen = (job.counts(), job.complete())
            try:
                return self.next(timeout=0)
            except StopIteration:
                raise StopAsyncIteration from None
            except MPTimeoutError:
                pass
            pool = self._pool
            if pool is None:
                continue  # finished meanwhile: the next look says so
            await until(pool._waiters, job, _changed_since(job, seen))

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next result (in input order for ``imap``, as they finish for
        ``imap_unordered``); a task's exception is raised at its place.
        ``multiprocessing.TimeoutError`` after `timeout` seconds."""
        with self._lock:
            while True:
                if self._buffer:
                    return self._buffer.pop()
                if self._stopped:
                    raise StopIteration
                success, value = self._next_chunk(timeout)
                self._unreleased += 1  # its place in the read-ahead window is free
                if self._unreleased >= self._release_every():
                    self._release()
                if not success:
                    if self._chunked:
                        self._stopped = True  # as the stdlib's chunked imap: stop after an error
                    _raise(value)
                if len(value) == 1:
                    return value[0]
                value.reverse()
                self._buffer = value

    def _release_every(self) -> int:
        return 1 if self._window is None else feeder_min_room(self._window.limit)

    def _release(self) -> None:
        if self._unreleased:
            if self._window is not None:
                self._window.consumed(self._unreleased, self._largest_unreleased)
            self._job.release(self._unreleased)
            self._unreleased = 0
            self._largest_unreleased = 0

    def _next_chunk(self, timeout: Optional[float]) -> tuple[Any, ...]:
        while True:
            if self._ordered and self._next_index in self._pending:
                status, payload = self._pending.pop(self._next_index)
                self._next_index += 1
                return self._decode(self._next_index - 1, status, payload)
            if not self._arrived:
                self._release()  # before waiting: the feeder may need that room
                try:
                    batch = self._job.next_outcomes(timeout)
                except StopIteration:
                    return self._finish()
                if batch is None:
                    raise MPTimeoutError
                self._arrived.extend(batch)
            index, status, payload = self._arrived.popleft()
            if not self._ordered:
                self._next_index += 1
                return self._decode(index, status, payload)
            self._pending[index] = (status, payload)

    def _decode(self, index: int, status: int, payload: bytes) -> tuple[Any, ...]:
        _stop_here_at_exit()
        if status == LOCAL_ERROR:
            return False, self._local_errors.pop(index)
        if len(payload) > self._largest_unreleased:
            self._largest_unreleased = len(payload)
        return decode(status, payload)

    def _finish(self) -> tuple[Any, ...]:
        self._stopped = True
        self._pool = None
        if self._progress is not None:
            self._progress.finish(self._job.counts()[0])
        raise StopIteration
