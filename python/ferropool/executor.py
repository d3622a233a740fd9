"""``ferropool.ProcessPoolExecutor``: ``concurrent.futures.ProcessPoolExecutor``
on ferropool's engine (not on the stdlib's executor).

    submit() ── pickle args ──▶ pending (cancellable) ──dispatch──▶ stream job of fn (running)
    service thread ◀── each outcome ── engine: set the Future, dispatch more

All calls of one function go through one long-lived engine job (a stream):
the function is pickled and sent to each worker once, not once per call.
Futures are real ``concurrent.futures.Future`` objects. A future stays
cancellable while it waits in ``pending``; only about two tasks per worker are
handed to the engine at a time (the stdlib keeps ``max_workers + 1``).

Ownership, as in the stdlib and loky: the state lives in an `_ExecutorCore`
that the service thread holds; the executor object users hold is a thin
front the service side never references. An executor dropped without
``shutdown()`` is collected: its pending work still runs (as the stdlib's at
garbage collection), then the engine stops and the workers, threads and file
descriptors go with it.

Differences from the stdlib, on purpose: a worker that dies fails only the
future it was running, with ``WorkerLostError``, and the executor goes on;
leaving the ``with`` block because of KeyboardInterrupt stops the workers
instead of waiting for running work;
``max_tasks_per_child`` works with every start method (the stdlib refuses
``fork``) and does not change the default start method; ``terminate_workers``,
``kill_workers`` and ``map(buffersize=...)`` (Python 3.14's) exist on every
supported Python.
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
import time
import weakref
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from multiprocessing import TimeoutError as MPTimeoutError

from . import _arguments, _launch
from ._compat import class_seen_as
from ._errors import BrokenProcessPool
from ._executor_core import ExecutorCore
from ._feeding import Reader, Window, feed_all, start_feeder
from ._lifecycle import executors_at_exit
from ._native import STARMAP, EngineStopped
from ._pool_results import IMapIterator
from ._progress import fixed_chunks, make_progress
from ._serializers import serializer_from

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional

    from ._progress import Progress
    from ._stats import PoolStats

__all__ = ["ProcessPoolExecutor"]


class ProcessPoolExecutor(Executor):
    """An executor that runs calls in a pool of worker processes.

    ferropool's own keyword-only options, as for ``Pool``: ``task_timeout``
    and ``max_memory_per_child``."""

    def __init__(
        self,
        max_workers: Optional[int] = None,
        mp_context: Any = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: Optional[int] = None,
        task_timeout: Optional[float] = None,
        max_memory_per_child: Optional[int] = None,
        serializer: Any = None,
    ) -> None:
        self._core: Optional[ExecutorCore] = None
        max_workers = _arguments.executor_arguments(
            max_workers, initializer, max_tasks_per_child, task_timeout, max_memory_per_child
        )
        pickles = serializer_from(serializer)
        self._max_workers = max_workers
        self._mp_context = mp_context
        running = _launch.start_engine(
            _launch.start_method_of(mp_context),
            max_workers,
            initializer,
            initargs,
            max_tasks_per_child,
            boot_failure_limit=1,  # as the stdlib: a failing initializer breaks the pool
            task_timeout=task_timeout,
            max_memory=max_memory_per_child,
            executor=True,
            serializer=pickles.for_workers,
        )
        core = ExecutorCore(running, max_workers, pickles)
        # Ctrl-C while the first workers start, say: nothing outlives it.
        running.serve(core.outcomes_arrived, "ferropool-executor-service")
        self._core = core
        executors_at_exit.add(core)
        # Dropped without shutdown(): as the stdlib's at garbage collection,
        # the work already submitted runs, then the workers stop.
        finalizer = weakref.finalize(self, core.begin_shutdown)
        finalizer.atexit = False

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # isinstance(self, concurrent.futures.ProcessPoolExecutor): see _compat.
        return class_seen_as(type(self), "concurrent.futures.process", "ProcessPoolExecutor")

    def stats(self) -> PoolStats:
        """As ``Pool.stats()``: each worker's figures, the workers that
        ended and why, and the totals (ferropool's own)."""
        from ._stats import from_engine

        return from_engine(self._core.engine.stats())  # type: ignore[union-attr]

    @property
    def _broken(self) -> Optional[str]:
        """Why the pool broke, or None (the stdlib's attribute)."""
        return None if self._core is None else self._core.broken

    # ----- submitting ----------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedules ``fn(*args, **kwargs)``; returns its Future. Arguments
        that cannot be pickled fail that future, as with the stdlib."""
        _arguments.check_callable(fn)
        return self._core.submit(fn, args, kwargs)  # type: ignore[union-attr]

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> Iterator[Any]:
        """Like ``map(fn, *iterables)``, run in the workers, results in order.

        ``progress``: True for a progress bar (tqdm, or a counter on stderr),
        or a callable given ``(done, total)`` (ferropool's own).

        ``buffersize`` (Python 3.14's) bounds how many chunks are submitted
        ahead of the one being yielded, so the input is read lazily; with
        None every chunk is submitted at once, as in the stdlib.

        All chunks of one call go through one engine job (``fn`` is pickled
        once, not per chunk, and no future is made per chunk); chunks not yet
        sent to a worker are cancelled when the caller stops reading the
        results, or at ``shutdown(cancel_futures=True)``.

        Where ``submit`` is overridden (on the instance, as tqdm's
        ``process_map`` does to count progress, or in a subclass), ``map``
        goes through it, one call per chunk, as the stdlib's does."""
        _arguments.check_executor_chunksize(chunksize)
        _arguments.check_buffersize(buffersize)
        _arguments.check_progress(progress)
        end_time = None if timeout is None else timeout + time.monotonic()
        total = None
        if progress is not None and all(hasattr(it, "__len__") for it in iterables):
            total = min((len(it) for it in iterables), default=0)  # type: ignore[arg-type]
        if "submit" in self.__dict__ or type(self).submit is not ProcessPoolExecutor.submit:
            tracker = make_progress(progress, total, fixed_chunks(chunksize), "map")
            return _map_through_submit(
                self.submit, fn, iterables, end_time, chunksize, buffersize, tracker
            )
        core: ExecutorCore = self._core  # type: ignore[assignment]
        engine = core.engine
        with core.lock:
            core.check_open()
            try:
                func = core.serializer.function(fn)
            except Exception as e:
                # As the stdlib: every chunk fails with it, at the first result.
                return _raise_first(e)
            try:
                job = engine.new_job(func, STARMAP, False, progress is not None)
            except EngineStopped:
                why = engine.broken() or "the pool's engine has stopped"
                raise BrokenProcessPool(why) from None
            core.map_jobs.add(job)
        window = None if buffersize is None else Window(buffersize)
        results = IMapIterator(None, job, ordered=True, chunked=True, window=window)
        reader = Reader(
            job, zip(*iterables), results._local_errors, pickle_chunk=core.serializer.chunk
        )
        if progress is not None:
            items_done = fixed_chunks(chunksize)
            tracker = make_progress(
                progress, total, lambda chunks: min(items_done(chunks), reader.first_item), "map"
            )
            results._progress = core.tracked[job.id] = tracker
        if window is None:
            feed_all(engine, job, reader, chunksize)
        else:
            sizes = itertools.repeat(chunksize)
            start_feeder(engine, job, reader, sizes, window, on_stopped=core.map_input_cut)
        return _results_in_order(engine, job, results, end_time)

    # ----- stopping ------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more work is accepted; the work given runs to its end (with
        ``cancel_futures``, what has not started is cancelled), then the
        workers stop. ``wait``: return only once they have."""
        core = self._core
        if core is None:
            return
        core.begin_shutdown(cancel_futures)
        if wait:
            core.wait_stopped()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C: one press must be enough, so do not wait for running
            # work (the stdlib does); cancel what waits, stop the workers.
            self._force_shutdown(kill=False)
        self.shutdown(wait=True)

    def terminate_workers(self) -> None:
        """Stops every worker with SIGTERM now (Python 3.14's API). Pending
        work is cancelled; running work fails with BrokenProcessPool."""
        self._force_shutdown(kill=False)

    def kill_workers(self) -> None:
        """Stops every worker with SIGKILL now (Python 3.14's API)."""
        self._force_shutdown(kill=True)

    def _force_shutdown(self, kill: bool) -> None:
        if self._core is None:
            return
        self.shutdown(wait=False, cancel_futures=True)
        self._core.engine.terminate(kill)


try:
    # At interpreter exit, as the stdlib: no new work is accepted, and
    # executors nobody shut down (or that were collected with work pending)
    # finish the work they were given. Runs before atexit hooks (as the
    # stdlib executor's own exit hook), so a hook that submits sees the
    # interpreter shutting down.
    threading._register_atexit(executors_at_exit.stop_all)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # imported while the interpreter exits
    import atexit

    atexit.register(executors_at_exit.stop_all)


def _run_chunk(fn: Callable[..., Any], chunk: List[tuple[Any, ...]]) -> List[Any]:
    return [fn(*args) for args in chunk]


def _map_through_submit(
    submit: Callable[..., Future[Any]],
    fn: Callable[..., Any],
    iterables: tuple[Any, ...],
    end_time: Optional[float],
    chunksize: int,
    buffersize: Optional[int],
    tracker: Optional[Progress],
) -> Iterator[Any]:
    """The stdlib's ``map``: each chunk a call of `submit`; all chunks
    submitted now, or (`buffersize`) that many ahead of the one being read."""
    items = zip(*iterables)
    chunks = iter(lambda: list(itertools.islice(items, chunksize)), [])
    call = functools.partial(_run_chunk, fn)  # one object: one stream of calls
    if tracker is not None:
        submit = _counting_submit(submit, tracker)
    ahead = chunks if buffersize is None else itertools.islice(chunks, buffersize)
    futures = collections.deque(submit(call, chunk) for chunk in ahead)
    more = None if buffersize is None else chunks
    return _chunk_results(futures, more, submit, call, end_time, tracker)


def _counting_submit(
    submit: Callable[..., Future[Any]], tracker: Progress
) -> Callable[..., Future[Any]]:
    """`submit`, counting each chunk whose future is done."""
    lock = threading.Lock()
    done = [0]

    def one_more(_: Future[Any]) -> None:
        with lock:
            done[0] += 1
            tracker.chunks_arrived(done[0])

    def counting(call: Callable[..., Any], chunk: List[tuple[Any, ...]]) -> Future[Any]:
        future = submit(call, chunk)
        future.add_done_callback(one_more)
        return future

    return counting


def _chunk_results(
    futures: Deque[Future[Any]],
    more: Optional[Iterator[List[tuple[Any, ...]]]],
    submit: Callable[..., Future[Any]],
    call: Callable[..., Any],
    end_time: Optional[float],
    tracker: Optional[Progress] = None,
) -> Iterator[Any]:
    """Yields the chunks' results in order (a chunk's error at its
    position), submitting one more chunk from `more` for each one taken;
    what is left is cancelled when the consumer stops early."""
    try:
        while futures:
            future = futures.popleft()
            if more is not None:
                chunk = next(more, None)
                if chunk is not None:
                    futures.append(submit(call, chunk))
            timeout = None if end_time is None else end_time - time.monotonic()
            try:
                results = future.result(timeout)
            except FuturesTimeoutError:
                future.cancel()
                raise
            del future
            results.reverse()
            while results:
                yield results.pop()
    finally:
        for future in futures:
            future.cancel()
        if tracker is not None:
            tracker.finish()


def _raise_first(error: BaseException) -> Iterator[Any]:
    raise error
    yield  # a generator: the error comes at the first result, as in the stdlib


def _results_in_order(
    engine: Any, job: Any, results: IMapIterator, end_time: Optional[float]
) -> Iterator[Any]:
    """Yields a map's results in order; a chunk's error is raised at its
    position. Chunks not yet sent are cancelled if the consumer stops early
    or a result times out. Holds no result once it has yielded it."""
    finished = False
    try:
        while True:
            timeout = None if end_time is None else max(0.0, end_time - time.monotonic())
            try:
                box = [results.next(timeout)]
            except StopIteration:
                finished = True
                return
            except MPTimeoutError:
                raise FuturesTimeoutError() from None
            yield box.pop()
    finally:
        if results._progress is not None:
            results._progress.finish(job.counts()[0])
        if not finished:
            try:
                engine.cancel_queued(job)
            except EngineStopped:
                pass  # the engine has stopped: nothing is queued any more
