"""``ferropool.ProcessPoolExecutor``: ``concurrent.futures.ProcessPoolExecutor``
on ferropool's engine (not on the stdlib's executor).

    submit() ── pickle args ──▶ pending (cancellable) ──dispatch──▶ stream job of fn (running)
    service thread ◀── each outcome ── engine: set the Future, dispatch more

All calls of one function go through one long-lived engine job (a stream):
the function is pickled and sent to each worker once, not once per call.
Futures are real ``concurrent.futures.Future`` objects. A future stays
cancellable while it waits in ``pending``; only about two tasks per worker are
handed to the engine at a time (the stdlib keeps ``max_workers + 1``).

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

import atexit
import collections
import itertools
import logging
import os
import threading
import time
import weakref
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from multiprocessing import TimeoutError as MPTimeoutError
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, Optional

from . import _launch
from ._errors import BrokenProcessPool
from ._feeding import Window, feed, feed_all
from ._outcomes import POOL_BROKEN, decode
from ._pickling import dumps_call, dumps_function
from ._results import IMapIterator

__all__ = ["ProcessPoolExecutor"]

APPLY, STARMAP = 0, 2
# Tasks handed to the engine per worker; the rest wait, cancellable, in Python.
IN_FLIGHT_PER_WORKER = 2
# Functions with a stream of their own at once; the least recently used
# stream is closed when another function needs one.
MAX_STREAMS = 16

_live_executors: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()


class _WorkItem:
    __slots__ = ("future", "fn", "payload")

    def __init__(self, future: Future, fn: Callable[..., Any], payload: bytes):
        self.future = future
        self.fn = fn
        self.payload = payload


class _Stream:
    """One engine job carrying every call of one function."""

    __slots__ = ("fn", "job", "next_index", "in_flight", "closed")

    def __init__(self, fn: Callable[..., Any], job: Any) -> None:
        self.fn = fn  # kept alive, so its id() stays its own
        self.job = job
        self.next_index = 0
        self.in_flight: Dict[int, _WorkItem] = {}
        self.closed = False


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
    ) -> None:
        self._engine: Any = None
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        _launch.check_limits(task_timeout, max_memory_per_child)
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._lock = threading.Lock()
        self._pending: Deque[_WorkItem] = collections.deque()
        self._in_flight = 0
        self._in_flight_limit = max_workers * IN_FLIGHT_PER_WORKER
        # Jobs of map() calls whose results are still being read.
        self._map_jobs: weakref.WeakSet[Any] = weakref.WeakSet()
        # Streams by id(fn), most recently used last; and by engine job id.
        self._streams: collections.OrderedDict[int, _Stream] = collections.OrderedDict()
        self._by_job: Dict[int, _Stream] = {}
        self._shutdown = False
        self._engine_closed = False
        self._broken: Optional[str] = None
        started = _launch.start_engine(
            _launch.start_method_of(mp_context),
            max_workers,
            initializer,
            initargs,
            max_tasks_per_child,
            boot_failure_limit=1,  # as the stdlib: a failing initializer breaks the pool
            task_timeout=task_timeout,
            max_memory=max_memory_per_child,
        )
        self._engine = started.engine
        self._reap_helpers = started.reap
        self._service = threading.Thread(
            target=_serve_outcomes,
            args=(self._engine, self, self._reap_helpers, started.fork_worker),
            name="ferropool-executor-service",
            daemon=True,
        )
        self._service.start()
        started.wait_first()
        _live_executors.add(self)

    # ----- submitting ----------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if not callable(fn):
            raise TypeError(f"'{type(fn).__name__}' object is not callable")
        with self._lock:
            self._check_open()
            future: Future = Future()
            try:
                item = _WorkItem(future, fn, dumps_call(args, kwargs))
            except Exception as e:
                # As the stdlib: an argument that cannot be pickled fails its
                # own future; the executor carries on.
                future.set_exception(e)
                return future
            self._pending.append(item)
            self._dispatch()
        return future

    def _check_open(self) -> None:
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _stream_for(self, fn: Callable[..., Any]) -> _Stream:
        """The stream of `fn`, made on first use (lock held)."""
        stream = self._streams.get(id(fn))
        if stream is not None and stream.fn is fn:
            self._streams.move_to_end(id(fn))
            return stream
        job = self._engine.new_job(dumps_function(fn), APPLY, False, True)
        stream = _Stream(fn, job)
        self._streams[id(fn)] = stream
        self._by_job[job.id] = stream
        while len(self._streams) > MAX_STREAMS:
            _, old = self._streams.popitem(last=False)
            self._close_stream(old)
        return stream

    def _close_stream(self, stream: _Stream) -> None:
        if not stream.closed:
            stream.closed = True
            try:
                self._engine.add_tasks(stream.job, stream.next_index, [], True)
            except ValueError:
                pass  # the engine already stopped: the job was failed there
        if not stream.in_flight:
            self._by_job.pop(stream.job.id, None)

    def _dispatch(self) -> None:
        """Hands pending work to the engine while there is room (lock held)."""
        while self._pending:
            if self._in_flight >= self._in_flight_limit:
                break
            item = self._pending.popleft()
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                stream = self._stream_for(item.fn)
            except Exception as e:  # the function cannot be pickled
                item.future.set_exception(e)
                continue
            index = stream.next_index
            stream.next_index += 1
            stream.in_flight[index] = item
            self._in_flight += 1
            self._engine.add_tasks(stream.job, index, [item.payload], False)
        if self._shutdown and not self._pending and not self._engine_closed:
            # Close only once nothing waits here: the engine stops its workers
            # as soon as it has no open jobs left.
            self._engine_closed = True
            for stream in list(self._streams.values()):
                self._close_stream(stream)
            self._streams.clear()
            self._engine.close()

    def _outcomes_arrived(self, job_id: int) -> None:
        """Service thread: settle the futures of a stream's new outcomes."""
        with self._lock:
            stream = self._by_job.get(job_id)
        if stream is None:
            return
        settled = []
        broken = None
        seen = set()
        for index, status, payload in stream.job.take():
            item = stream.in_flight.get(index)
            if item is None or index in seen:
                # A second outcome for one task (the pool broke just as it
                # was sent, which fails it twice): the first one stands.
                continue
            seen.add(index)
            success, value = decode(status, payload)
            if status == POOL_BROKEN:
                broken = value
            settled.append((index, item, success, value))
        for _, item, success, value in settled:
            if success:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
        with self._lock:
            for index, _, _, _ in settled:
                del stream.in_flight[index]
            self._in_flight -= len(settled)
            if stream.closed and not stream.in_flight:
                self._by_job.pop(stream.job.id, None)
            if broken is not None and self._broken is None:
                self._broken = str(broken)
                for waiting in self._pending:
                    if waiting.future.set_running_or_notify_cancel():
                        waiting.future.set_exception(BrokenProcessPool(self._broken))
                self._pending.clear()
            if self._broken is None:
                self._dispatch()
            elif self._shutdown and not self._engine_closed:
                self._engine_closed = True
                self._engine.close()

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
        buffersize: Optional[int] = None,
    ) -> Iterator[Any]:
        """Like ``map(fn, *iterables)``, run in the workers, results in order.

        ``buffersize`` (Python 3.14's) bounds how many chunks are submitted
        ahead of the one being yielded, so the input is read lazily; with
        None every chunk is submitted at once, as in the stdlib.

        All chunks of one call go through one engine job (``fn`` is pickled
        once, not per chunk, and no future is made per chunk); chunks not yet
        sent to a worker are cancelled when the caller stops reading the
        results, or at ``shutdown(cancel_futures=True)``."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if isinstance(buffersize, bool) or not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        with self._lock:
            self._check_open()
            try:
                func = dumps_function(fn)
            except Exception as e:
                # As the stdlib: every chunk fails with it, at the first result.
                return _raise_first(e)
            job = self._engine.new_job(func, STARMAP, False)
            self._map_jobs.add(job)
        items = zip(*iterables)
        window = None if buffersize is None else Window(buffersize)
        results = IMapIterator(None, job, ordered=True, chunked=True, window=window)
        if window is None:
            feed_all(self._engine, job, items, chunksize, results._local_errors)
        else:
            threading.Thread(
                target=feed,
                args=(self._engine, job, items, itertools.repeat(chunksize), window),
                kwargs=dict(local_errors=results._local_errors, on_stopped=self._map_input_cut),
                name="ferropool-feeder",
                daemon=True,
            ).start()
        return _results_in_order(self._engine, job, results, end_time)

    def _map_input_cut(self, fail: Callable[[BaseException], None]) -> None:
        """A lazy map's feeder stopped before the end of its input: after a
        shutdown, the results end with the stdlib's error for a submit."""
        if self._shutdown:
            fail(RuntimeError("cannot schedule new futures after shutdown"))

    # ----- stopping ------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._engine is None:
            return
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for item in self._pending:
                    item.future.cancel()
                self._pending.clear()
            for job in list(self._map_jobs):
                # Lazy maps read no more input; with cancel_futures, chunks
                # not yet sent to a worker are cancelled too.
                if cancel_futures:
                    self._engine.cancel_queued(job)
                else:
                    job.stop_feeding()
            self._dispatch()
        if wait:
            self._engine.wait_finished()
            if threading.current_thread() is not self._service:
                self._service.join()
            self._reap_helpers()
            _live_executors.discard(self)

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
        if self._engine is None:
            return
        self.shutdown(wait=False, cancel_futures=True)
        self._engine.terminate(kill)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and not getattr(self, "_shutdown", True):
            try:
                self.shutdown(wait=False, cancel_futures=True)
            except Exception:
                pass


@atexit.register
def _finish_forgotten_executors() -> None:
    """As the stdlib: at interpreter exit, executors nobody shut down finish
    the work they were given."""
    for executor in list(_live_executors):
        try:
            executor.shutdown(wait=True)
        except Exception:
            pass


def _serve_outcomes(
    engine: Any, executor: ProcessPoolExecutor, on_engine_done: Any, fork_worker: Any
) -> None:
    """The executor's service thread: settles futures as outcomes arrive,
    forwards the engine's log lines, forks the workers a `fork` engine asks
    for; reaps helpers once the engine ended."""
    while True:
        events = engine.service_next()
        if events is None:
            break
        jobs, forks = events
        _launch.fork_asked(fork_worker, forks)
        for job_id in dict.fromkeys(jobs):
            try:
                executor._outcomes_arrived(job_id)
            except Exception:
                # This thread also forks the workers: it must go on.
                logging.getLogger("ferropool").exception("settling futures failed")
    on_engine_done()


def _raise_first(error: BaseException) -> Iterator[Any]:
    raise error
    yield  # a generator: the error comes at the first result, as in the stdlib


def _results_in_order(
    engine: Any, job: Any, results: IMapIterator, end_time: Optional[float]
) -> Iterator[Any]:
    """Yields a map's results in order; a chunk's error is raised at its
    position. Chunks not yet sent are cancelled if the consumer stops early
    or a result times out."""
    finished = False
    try:
        while True:
            timeout = None if end_time is None else max(0.0, end_time - time.monotonic())
            try:
                value = results.next(timeout)
            except StopIteration:
                finished = True
                return
            except MPTimeoutError:
                raise FuturesTimeoutError() from None
            yield value
    finally:
        if not finished:
            try:
                engine.cancel_queued(job)
            except ValueError:
                pass  # the engine has stopped: nothing is queued any more
