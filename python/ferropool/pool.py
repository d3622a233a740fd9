"""``ferropool.Pool``: the API of ``multiprocessing.Pool`` on the Rust engine.

    caller ── pickle func once, args per chunk ──▶ Engine.add_tasks ──▶ (Rust)
    get()/next() ◀── unpickle ◀── Job.take()/next_outcome() ◀── (Rust)
    service thread ◀── jobs with callbacks, engine log lines ◀── (Rust)

Results are unpickled in the thread that asks for them; callbacks run in the
pool's service thread (never in the engine), in completion order, before the
result counts as ready, as in the stdlib.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import warnings
import weakref
from multiprocessing import TimeoutError as MPTimeoutError
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from . import _launch
from ._outcomes import LOCAL_ERROR, decode

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator"]

log = logging.getLogger("ferropool")

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"
APPLY, MAP, STARMAP = 0, 1, 2
# Chunks an imap keeps in flight per worker before reading more input.
IMAP_CHUNKS_PER_WORKER = 8

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _dumps(obj: Any) -> bytes:
    return bytes(ForkingPickler.dumps(obj))


def _check_callable(func: Any) -> None:
    if not callable(func):
        raise TypeError(f"'{type(func).__name__}' object is not callable")


class Pool:
    """A process pool with the API of ``multiprocessing.Pool``.

    ferropool's own keyword-only options: ``task_timeout`` (seconds per task,
    or per chunk of a map: a task over it has its worker killed and fails with
    ``TaskTimeoutError``) and ``max_memory_per_child`` (bytes: a worker whose
    resident memory has grown past it is replaced after its current task)."""

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        *,
        task_timeout: Optional[float] = None,
        max_memory_per_child: Optional[int] = None,
    ) -> None:
        self._state = INIT
        self._ctx = context
        method = _launch.start_method_of(context)
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        _launch.check_limits(task_timeout, max_memory_per_child)
        self._processes = processes
        self._start_method = method
        started = _launch.start_engine(
            method,
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            task_timeout=task_timeout,
            max_memory=max_memory_per_child,
        )
        self._engine = started.engine
        self._reap_helpers = started.reap
        self._cache: Dict[int, Any] = {}
        self._feeders: List[threading.Thread] = []
        self._service = threading.Thread(
            target=_service_loop,
            args=(self._engine, self._cache),
            name="ferropool-service",
            daemon=True,
        )
        self._service.start()
        self._state = RUN
        _live_pools.add(self)

    # ----- lifecycle -----------------------------------------------------

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{name} state={self._state} pool_size={self._processes}>"

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __del__(self, _warn: Any = warnings.warn, RUN: str = RUN) -> None:
        if getattr(self, "_state", None) == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
            try:
                self.terminate()
            except Exception:
                pass

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def close(self) -> None:
        """No more work will be submitted; workers exit once it is done."""
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self) -> None:
        """Stops the workers now. Unfinished work fails with BrokenProcessPool."""
        if self._state == INIT:
            return
        self._state = TERMINATE
        self._engine.terminate()
        self._wait_stopped()

    def join(self) -> None:
        """Waits for the workers to exit (after ``close`` or ``terminate``)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        elif self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._wait_stopped()

    def _wait_stopped(self) -> None:
        self._engine.wait_finished()
        me = threading.current_thread()
        for t in [self._service, *self._feeders]:
            if t is not me:
                t.join()
        self._feeders = [t for t in self._feeders if t.is_alive()]
        self._reap_helpers()
        _live_pools.discard(self)

    # ----- submitting ----------------------------------------------------

    def _new_job(self, func: Any, mode: int, has_callback: bool) -> Any:
        return self._engine.new_job(_dumps(func), mode, has_callback)

    def apply(
        self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Optional[dict] = None
    ) -> Any:
        """Calls ``func(*args, **kwds)`` in a worker and returns the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Optional[dict] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
    ) -> ApplyResult:
        self._check_running()
        _check_callable(func)
        payload = _dumps((tuple(args), dict(kwds or {})))
        job = self._new_job(func, APPLY, callback is not None or error_callback is not None)
        result = ApplyResult(self, job, callback, error_callback)
        self._engine.add_tasks(job, 0, [payload], True)
        return result

    def map(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: Optional[int] = None
    ) -> List[Any]:
        """Like ``list(map(func, iterable))``, run in the workers."""
        return self._map_async(func, iterable, MAP, chunksize).get()

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
    ) -> List[Any]:
        """Like ``list(itertools.starmap(func, iterable))``, run in the workers."""
        return self._map_async(func, iterable, STARMAP, chunksize).get()

    def map_async(
        self, func, iterable, chunksize=None, callback=None, error_callback=None
    ) -> MapResult:
        return self._map_async(func, iterable, MAP, chunksize, callback, error_callback)

    def starmap_async(
        self, func, iterable, chunksize=None, callback=None, error_callback=None
    ) -> MapResult:
        return self._map_async(func, iterable, STARMAP, chunksize, callback, error_callback)

    def _map_async(
        self,
        func: Any,
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
    ) -> MapResult:
        self._check_running()
        _check_callable(func)
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        length = len(iterable)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize, extra = divmod(length, self._processes * 4)
            if extra:
                chunksize += 1
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        if length == 0:
            chunksize = 0
        items = iter(iterable)
        payloads = []
        if length:
            for _ in range(0, length, chunksize):
                payloads.append(_dumps(list(itertools.islice(items, chunksize))))
        if length == 0:
            # As the stdlib: an empty map is ready at once and calls no callback.
            callback = error_callback = None
        job = self._new_job(func, mode, callback is not None or error_callback is not None)
        result = MapResult(self, job, chunksize, length, callback, error_callback)
        self._engine.add_tasks(job, 0, payloads, True)
        return result

    def imap(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Lazy, ordered ``map``: input is read as workers need it."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Like ``imap``, yielding results as they complete."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def _imap(
        self, func: Any, iterable: Iterable[Any], chunksize: int, ordered: bool
    ) -> IMapIterator:
        self._check_running()
        _check_callable(func)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        job = self._new_job(func, MAP, False)
        it = IMapIterator(self, job, ordered, chunked=chunksize > 1)
        limit = max(2, self._processes * IMAP_CHUNKS_PER_WORKER)
        feeder = threading.Thread(
            target=_feed,
            args=(self._engine, job, iter(iterable), chunksize, limit, it),
            name="ferropool-feeder",
            daemon=True,
        )
        self._feeders = [t for t in self._feeders if t.is_alive()]
        self._feeders.append(feeder)
        feeder.start()
        return it


@atexit.register
def _terminate_forgotten_pools() -> None:
    """At interpreter exit, stop pools nobody closed (as the stdlib does)."""
    for pool in list(_live_pools):
        try:
            pool.terminate()
        except Exception:
            pass


def _feed(
    engine: Any, job: Any, items: Iterator[Any], chunksize: int, limit: int, it: IMapIterator
) -> None:
    """Reads the input of an imap lazily: at most `limit` chunks in flight.

    As in the stdlib, a chunk that cannot be pickled fails at its own position
    and the rest go on; an exception from the input fails the next position
    and ends the input."""
    index = 0
    try:
        while job.wait_room(limit):
            try:
                chunk = list(itertools.islice(items, chunksize))
            except Exception as e:
                it._local_errors[index] = e
                job.add_local_error(index)
                break
            if not chunk:
                break
            try:
                payload = _dumps(chunk)
            except Exception as e:
                it._local_errors[index] = e
                job.add_local_error(index)
            else:
                engine.add_tasks(job, index, [payload], False)
            index += 1
    finally:
        try:
            engine.add_tasks(job, index, [], True)
        except Exception:
            pass  # the pool stopped: the job was already failed


def _service_loop(
    engine: Any, cache: Dict[int, Any], on_engine_done: Optional[Callable[[], None]] = None
) -> None:
    """Runs callbacks of completed jobs and forwards the engine's log lines;
    once the engine has ended, runs `on_engine_done` (reaps helper processes
    when nobody joins)."""
    while True:
        jobs = engine.service_next()
        if jobs is None:
            break
        for job_id in jobs:
            result = cache.pop(job_id, None)
            if result is not None:
                result._complete_with_callbacks()
    if on_engine_done is not None:
        on_engine_done()


class ApplyResult:
    """The result of ``apply_async`` (``multiprocessing.pool.AsyncResult``)."""

    def __init__(self, pool: Pool, job: Any, callback: Any, error_callback: Any) -> None:
        self._pool: Optional[Pool] = pool
        self._job = job
        self._callback = callback
        self._error_callback = error_callback
        self._lock = threading.Lock()
        self._outcome: Optional[tuple] = None  # (success, value or exception)
        if callback is not None or error_callback is not None:
            pool._cache[job.id] = self

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"

    def ready(self) -> bool:
        return self._job.ready()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._resolve()[0]

    def wait(self, timeout: Optional[float] = None) -> None:
        self._job.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        if not self._job.wait(timeout):
            raise MPTimeoutError
        success, value = self._resolve()
        if success:
            return value
        raise value

    def _resolve(self) -> tuple:
        with self._lock:
            if self._outcome is None:
                self._outcome = self._collect(self._job.take())
                self._pool = None
            return self._outcome

    def _collect(self, outcomes: List[tuple]) -> tuple:
        for _, status, payload in outcomes:
            return decode(status, payload)
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
            log.exception("ferropool: a result callback raised; the result is still delivered")
        finally:
            self._job.mark_ready()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: the chunks' results in
    input order; on failure, the first exception that arrived."""

    def __init__(
        self, pool: Pool, job: Any, chunksize: int, length: int, callback: Any, error_callback: Any
    ) -> None:
        self._chunksize = chunksize
        self._length = length
        super().__init__(pool, job, callback, error_callback)

    def _collect(self, outcomes: List[tuple]) -> tuple:
        values: List[Any] = [None] * self._length
        for index, status, payload in outcomes:
            success, value = decode(status, payload)
            if not success:
                return False, value
            start = index * self._chunksize
            values[start : start + len(value)] = value
        return True, values


class IMapIterator:
    """The iterator ``imap`` and ``imap_unordered`` return."""

    def __init__(self, pool: Pool, job: Any, ordered: bool, chunked: bool) -> None:
        self._pool: Optional[Pool] = pool
        self._job = job
        self._ordered = ordered
        self._chunked = chunked
        self._pending: Dict[int, tuple] = {}
        self._next_index = 0
        self._buffer: List[Any] = []
        self._stopped = False
        # Exceptions of tasks that never left the parent, by index (see _feed).
        self._local_errors: Dict[int, BaseException] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        with self._lock:
            if self._buffer:
                return self._buffer.pop()
            if self._stopped:
                raise StopIteration
            success, value = self._next_chunk(timeout)
            if not success:
                if self._chunked:
                    self._stopped = True  # as the stdlib's chunked imap: stop after an error
                raise value
            values = list(value)
            values.reverse()
            self._buffer = values
            if not self._buffer:
                return self.next(timeout)
            return self._buffer.pop()

    def _next_chunk(self, timeout: Optional[float]) -> tuple:
        while True:
            if self._ordered and self._next_index in self._pending:
                status, payload = self._pending.pop(self._next_index)
                self._next_index += 1
                return self._decode(self._next_index - 1, status, payload)
            try:
                outcome = self._job.next_outcome(timeout)
            except StopIteration:
                return self._finish()
            if outcome is None:
                raise MPTimeoutError
            index, status, payload = outcome
            if not self._ordered:
                self._next_index += 1
                return self._decode(index, status, payload)
            self._pending[index] = (status, payload)

    def _decode(self, index: int, status: int, payload: bytes) -> tuple:
        if status == LOCAL_ERROR:
            return False, self._local_errors.pop(index)
        return decode(status, payload)

    def _finish(self) -> tuple:
        self._stopped = True
        self._pool = None
        raise StopIteration
