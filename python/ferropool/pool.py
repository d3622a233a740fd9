"""``ferropool.Pool``: the API of ``multiprocessing.Pool`` on the Rust engine.

    caller ── pickle func once, args per chunk ──▶ Engine.add_tasks ──▶ (Rust)
    get()/next() ◀── unpickle ◀── Job.take()/next_outcomes() ◀── (Rust)
    service thread ◀── jobs with callbacks, engine log lines ◀── (Rust)

Results are unpickled in the thread that asks for them; callbacks run in the
pool's service thread (never in the engine), in completion order, before the
result counts as ready, as in the stdlib.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import warnings
import weakref

from . import _arguments, _launch
from ._aio import Waiters
from ._compat import WorkerHandle, class_seen_as, worker_handles
from ._feeding import Reader, Window, feed_all, start_feeder
from ._lifecycle import Ownership, pools_at_exit
from ._native import APPLY, MAP, STARMAP
from ._pool_results import ApplyResult, AsyncResult, IMapIterator, MapResult
from ._progress import fixed_chunks, growing_chunks, make_progress
from ._serializers import serializer_from

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

    from ._stats import PoolStats

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator"]

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"
# Chunks a lazy map keeps in flight per worker before reading more input
# (the default of `buffersize`): at first, and at most once imap's consumer
# has shown that results are small (see _feeding.Window).
CHUNKS_IN_FLIGHT_PER_WORKER = 32
MOST_CHUNKS_IN_FLIGHT_PER_WORKER = 256
# Lazy map_async over input without a length: chunks grow 1, 2, 4, ... to this.
LAZY_MAP_MAX_CHUNK = 256
# A sized map hands its pickled chunks to the engine in batches, the first
# of this many per worker (see _feeding.feed_all).
FIRST_BATCH_PER_WORKER = 2
# A sized map whose pickled input passes this many bytes hands the rest to a
# feeder thread that keeps LARGE_WINDOW_PER_WORKER chunks per worker in flight.
LARGE_INPUT_BYTES = 32 << 20
LARGE_WINDOW_PER_WORKER = 4
# ... and one of this many chunks, to a feeder that keeps as many in flight:
# millions of tiny tasks are not all queued at once (their bookkeeping, about
# a hundred bytes each, would outweigh their results).
MANY_CHUNKS = 16384
# A map with callbacks has its outcomes taken by the service thread each time
# this many wait (without callbacks, get() takes them as they come).
CALLBACK_MAP_BATCH = 4096
# map() over a range sends chunks of at least this many items as ranges.
RANGE_CHUNKS_FROM = 16


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
        serializer: Any = None,
    ) -> None:
        self._state = INIT
        self._owner = Ownership()
        self._ctx = context
        method = _launch.start_method_of(context)
        processes = _arguments.pool_arguments(
            processes, initializer, maxtasksperchild, task_timeout, max_memory_per_child
        )
        self._serializer = serializer_from(serializer)
        self._processes = processes
        self._start_method = method
        self._running = _launch.start_engine(
            method,
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            task_timeout=task_timeout,
            max_memory=max_memory_per_child,
            serializer=self._serializer.for_workers,
        )
        self._engine = self._running.engine
        self._cache: Dict[int, Any] = {}
        # Maps with progress=, by job id: (job, Progress), see _track.
        self._tracked: Dict[int, Any] = {}
        # Event loops awaiting results (see _aio).
        self._waiters = Waiters()
        self._feeders: List[threading.Thread] = []
        # imap iterators still reading input: their read-ahead bound is lifted
        # at close(), since join() must not wait for someone to consume.
        self._iterators: weakref.WeakSet[IMapIterator] = weakref.WeakSet()
        # Ctrl-C while the first workers start, say: nothing outlives it.
        self._running.serve(
            _news_runner(self._cache, self._tracked, self._waiters), "ferropool-service"
        )
        self._state = RUN
        pools_at_exit.add(self)

    # ----- what libraries read beyond the API (see _compat) ----------------

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return class_seen_as(type(self), "multiprocessing.pool", "Pool")

    def stats(self) -> PoolStats:
        """What each worker has done (tasks, time spent on them, bytes of
        tasks and results), the workers that ended and why, and the totals
        (ferropool's own). After the pool has stopped: as it left them."""
        from ._stats import from_engine

        return from_engine(self._engine.stats())

    @property
    def _pool(self) -> List[WorkerHandle]:
        """One handle per worker (the stdlib's list of its processes)."""
        return worker_handles(self._engine, self._processes)

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
        if getattr(self, "_state", None) == RUN and not self._owner.foreign():
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
            try:
                self.terminate()
            except Exception:
                pass

    def _check_running(self) -> None:
        if self._owner.foreign():
            raise self._owner.refuse("pool")
        if self._state != RUN:
            raise ValueError("Pool not running")

    def close(self) -> None:
        """No more work will be submitted; workers exit once it is done."""
        if self._state == RUN and not self._owner.foreign():
            self._state = CLOSE
            for it in list(self._iterators):
                it._job.release_on_arrival()
            self._engine.close()

    def terminate(self) -> None:
        """Stops the workers now. Unfinished work fails with BrokenProcessPool.
        (In a forked child, a pool of the parent's is left to the parent.)"""
        if self._state == INIT or self._owner.foreign():
            return
        self._begin_terminate()
        self._wait_stopped()

    def _begin_terminate(self) -> None:
        """Stops the workers without waiting for them."""
        if self._state == INIT or self._owner.foreign():
            return
        self._state = TERMINATE
        self._engine.terminate()

    def _wait_at_exit(self) -> None:
        if self._state != INIT and not self._owner.foreign():
            self._wait_stopped()

    # At interpreter exit every pool is told to stop first, then each is
    # waited for (see _lifecycle.ExitRegistry).
    _stop_at_exit = _begin_terminate

    def join(self) -> None:
        """Waits for the workers to exit (after ``close`` or ``terminate``)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        elif self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        if not self._owner.foreign():
            self._wait_stopped()

    def _wait_stopped(self) -> None:
        self._running.wait_stopped()
        # Feeder threads are not joined: one may be inside a slow input
        # generator; once the engine has ended, each stops at its next step
        # (its job is closed) without reading further.
        self._feeders = [t for t in self._feeders if t.is_alive()]
        pools_at_exit.discard(self)

    # ----- submitting ----------------------------------------------------

    def _new_job(
        self,
        func: Any,
        mode: int,
        has_callback: bool,
        batched: bool = False,
        progress: Any = None,
    ) -> Any:
        """`batched`: a map with callbacks, whose outcomes the service
        thread takes as they come (see MapResult.absorb_arrived). With
        `progress`, the service thread hears of every outcome, to count it."""
        batch = CALLBACK_MAP_BATCH if batched and has_callback else 0
        pickled = self._serializer.function(func)
        return self._engine.new_job(pickled, mode, has_callback, progress is not None, batch)

    def _track(
        self,
        result: Any,
        progress: Any,
        what: str,
        total: Optional[int],
        items_done: Callable[[int], int],
        reader: Reader,
    ) -> None:
        """Shows a map's progress (`progress=`), counted by the service
        thread as outcomes arrive; closed when the map's results are taken."""
        tracker = make_progress(
            progress, total, lambda chunks: min(items_done(chunks), reader.first_item), what
        )
        if tracker is not None:
            result._progress = tracker
            self._tracked[result._job.id] = (result._job, tracker)

    def _window(self, buffersize: Optional[int]) -> Window:
        """How many chunks a lazy map keeps in flight: `buffersize`, or an
        adaptive default."""
        _arguments.check_buffersize(buffersize)
        if buffersize is None:
            n = self._processes
            return Window(
                max(2, n * CHUNKS_IN_FLIGHT_PER_WORKER),
                most=n * MOST_CHUNKS_IN_FLIGHT_PER_WORKER,
                large=n * LARGE_WINDOW_PER_WORKER,
            )
        return Window(buffersize)

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Optional[dict[str, Any]] = None,
    ) -> Any:
        """Calls ``func(*args, **kwds)`` in a worker and returns the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
    ) -> ApplyResult:
        """Calls ``func(*args, **kwds)`` in a worker without waiting; the
        result's ``get()`` gives its value. ``callback`` (or, if it raised,
        ``error_callback``) runs in the pool's service thread before the
        result counts as ready. A function or argument that cannot be sent
        raises here, naming it."""
        self._check_running()
        _arguments.check_callable(func)
        payload = self._serializer.call(tuple(args), dict(kwds or {}))
        job = self._new_job(func, APPLY, callback is not None or error_callback is not None)
        result = ApplyResult(self, job, callback, error_callback)
        self._engine.add_tasks(job, 0, [payload], True)
        return result

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress: Any = None,
    ) -> List[Any]:
        """Like ``list(map(func, iterable))``, run in the workers.
        ``progress``: True for a progress bar (tqdm, or a counter on
        stderr), or a callable given ``(done, total)``."""
        results: List[Any] = self._map_async(
            func, iterable, MAP, chunksize, progress=progress
        ).get()
        return results

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        *,
        progress: Any = None,
    ) -> List[Any]:
        """Like ``list(itertools.starmap(func, iterable))``, run in the workers."""
        results: List[Any] = self._map_async(
            func, iterable, STARMAP, chunksize, progress=progress
        ).get()
        return results

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
        *,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> MapResult:
        """``map`` without waiting. Input without a length (a generator) is
        read lazily, at most ``buffersize`` chunks ahead."""
        return self._map_async(
            func, iterable, MAP, chunksize, callback, error_callback, buffersize, progress
        )

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
        *,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> MapResult:
        return self._map_async(
            func, iterable, STARMAP, chunksize, callback, error_callback, buffersize, progress
        )

    def _map_async(
        self,
        func: Any,
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> MapResult:
        self._check_running()
        _arguments.check_callable(func)
        _arguments.check_pool_chunksize(chunksize)
        _arguments.check_progress(progress)
        window = self._window(buffersize)
        if not hasattr(iterable, "__len__"):
            # Read lazily; chunk sizes grow while the length is unknown.
            sizes: Iterator[int]
            if chunksize:
                sizes, items_done = itertools.repeat(chunksize), fixed_chunks(chunksize)
            else:
                sizes = _growing_chunks()
                items_done = growing_chunks(1, LAZY_MAP_MAX_CHUNK)
            job = self._new_job(
                func, mode, callback is not None or error_callback is not None, True, progress
            )
            # All results are kept until get(): a task's place in the read-ahead
            # window is free as soon as its result is in.
            job.release_on_arrival()
            result = MapResult(self, job, callback, error_callback)
            reader = Reader(
                job, iterable, result._local_errors, pickle_chunk=self._serializer.chunk
            )
            self._track(result, progress, _name(mode), None, items_done, reader)
            self._start_feeder(job, reader, sizes, window)
            return result
        length = len(iterable)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize, extra = divmod(length, self._processes * 4)
            if extra:
                chunksize += 1
        if length == 0:
            # As the stdlib: an empty map is ready at once and calls no callback.
            callback = error_callback = None
        has_callback = callback is not None or error_callback is not None
        job = self._new_job(func, mode, has_callback, True, progress)
        chunksize = chunksize or 1
        result = MapResult(self, job, callback, error_callback, length, chunksize)
        # A range's chunks travel as ranges (a few bytes, not a pickled list
        # of its ints): the function gets the same ints.
        as_range = iterable if mode == MAP and type(iterable) is range else None
        if chunksize < RANGE_CHUNKS_FROM:
            as_range = None  # a one-int list pickles smaller than a range
        reader = Reader(
            job,
            iterable,
            result._local_errors,
            length=length,
            as_range=as_range,
            strict=True,
            pickle_chunk=self._serializer.chunk,
        )
        self._track(result, progress, _name(mode), length, fixed_chunks(chunksize), reader)
        try:
            self._submit_chunks(job, reader, chunksize)
        except BaseException:
            # A chunk could not be pickled: the call fails now; chunks already
            # sent run, and nobody hears of them (no callback either).
            self._cache.pop(job.id, None)
            raise
        return result

    def _submit_chunks(self, job: Any, reader: Reader, chunksize: int) -> None:
        """Pickles a sized input chunk by chunk and hands the chunks to the
        engine in growing batches, so the workers start on the first chunks
        while the rest are still being pickled. Once LARGE_INPUT_BYTES of
        pickled input or MANY_CHUNKS chunks are queued, a feeder thread takes
        over the rest, a window of chunks at a time (as imap's): large inputs
        are not all copied up front (their buffers are reused as results come
        in), and millions of tiny tasks are not all queued at once."""

        def hand_over(sent: int, sent_bytes: int) -> bool:
            return sent_bytes >= LARGE_INPUT_BYTES or sent >= MANY_CHUNKS

        first_batch = FIRST_BATCH_PER_WORKER * self._processes
        if feed_all(self._engine, job, reader, chunksize, first_batch, hand_over):
            return
        job.release_on_arrival()  # map_async keeps every result
        # From here on, as a lazy map's: a failure stays at its position.
        reader.strict = False
        reader.in_memory = True  # a sized input: reading it cannot block
        window = Window(max(reader.index, LARGE_WINDOW_PER_WORKER * self._processes))
        self._start_feeder(job, reader, itertools.repeat(chunksize), window)

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> IMapIterator:
        """Lazy, ordered ``map``: input is read as workers need it, at most
        ``buffersize`` chunks ahead (default: 32 per worker at first, up to
        256 while results are small, 4 once they are large)."""
        return self._imap(func, iterable, chunksize, True, buffersize, progress)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> IMapIterator:
        """Like ``imap``, yielding results as they complete."""
        return self._imap(func, iterable, chunksize, False, buffersize, progress)

    def _imap(
        self,
        func: Any,
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
        buffersize: Optional[int],
        progress: Any = None,
    ) -> IMapIterator:
        self._check_running()
        _arguments.check_callable(func)
        _arguments.check_pool_chunksize(chunksize)
        _arguments.check_progress(progress)
        window = self._window(buffersize)
        job = self._new_job(func, MAP, False, progress=progress)
        it = IMapIterator(self, job, ordered, chunksize > 1, window)
        self._iterators.add(it)
        reader = Reader(job, iterable, it._local_errors, pickle_chunk=self._serializer.chunk)
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        what = "imap" if ordered else "imap_unordered"
        self._track(it, progress, what, total, fixed_chunks(chunksize), reader)
        self._start_feeder(job, reader, itertools.repeat(chunksize), window)
        return it

    def _start_feeder(self, job: Any, reader: Reader, sizes: Iterator[int], window: Window) -> None:
        """A thread that reads and sends the rest of the input, at most
        `window.limit` chunks in flight."""
        self._feeders = [t for t in self._feeders if t.is_alive()]
        self._feeders.append(start_feeder(self._engine, job, reader, sizes, window))


def _name(mode: int) -> str:
    return "map" if mode == MAP else "starmap"


def _growing_chunks() -> Iterator[int]:
    size = 1
    while True:
        yield size
        size = min(size * 2, LAZY_MAP_MAX_CHUNK)


# At interpreter exit, pools nobody closed are stopped (as the stdlib's),
# without a word from the daemon threads still waiting on them.
atexit.register(pools_at_exit.stop_all)


def _news_runner(
    cache: Dict[int, Any], tracked: Dict[int, Any], waiters: Waiters
) -> Callable[[int], None]:
    """What the pool's service thread does with each job's news (see
    `_lifecycle.Running.serve`): counts the progress of maps that show it,
    runs the callbacks of jobs as they complete, in completion order, then
    wakes the event loops awaiting the job. It holds the results with
    callbacks, never the pool."""

    def on_news(job_id: int) -> None:
        try:
            _serve_news(job_id)
        finally:
            waiters.wake(job_id)  # after the callbacks: the result is ready

    def _serve_news(job_id: int) -> None:
        counted = tracked.get(job_id)
        if counted is not None:
            job, progress = counted
            progress.chunks_arrived(job.counts()[0])
            if job.complete():
                del tracked[job_id]
                progress.finish(job.counts()[0])
        result = cache.get(job_id)
        if result is None:
            return  # a batch's news that came after the job completed
        if result._job.complete():
            cache.pop(job_id, None)
            if pools_at_exit.exiting:
                # Stopped at exit: no callbacks then, as the stdlib's pool
                # runs none once terminated at exit.
                result._job.mark_ready()
            else:
                result._complete_with_callbacks()
        else:
            result.absorb_arrived()

    return on_news


def __getattr__(name: str) -> Any:
    """`ferropool.pool` stands where `multiprocessing.pool` does (`import
    ferropool as multiprocessing`): the stdlib's other names there
    (`ThreadPool`, `MaybeEncodingError`, ...) are the stdlib's own, imported
    on first use (private names are not looked for: the import system and
    pickle probe modules for dunders, and must not pay for the stdlib's pool)."""
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import multiprocessing.pool as stdlib_pool

    try:
        return getattr(stdlib_pool, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
