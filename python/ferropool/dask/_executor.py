"""``ferropool.dask.ProcessPoolExecutor``: the API of
``concurrent.futures.ProcessPoolExecutor`` on a Dask cluster, with real
``concurrent.futures.Future`` objects and a lazy ``map``."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor, Future

from .. import _arguments
from .._native import APPLY, STARMAP
from .._progress import make_progress
from ._results import IMapIterator, items_as_counted
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Optional

    from .._stats import PoolStats

__all__ = ["ProcessPoolExecutor"]

# Chunks ``map`` keeps submitted and not yet consumed, per worker thread of
# the cluster (the default of `buffersize`).
CHUNKS_IN_FLIGHT_PER_WORKER = 4


def _timeout_error() -> BaseException:
    from concurrent.futures import TimeoutError

    return TimeoutError()


def _settle(future: Future[Any], success: bool, value: Any) -> None:
    """Gives `future` the outcome of its task (a Dask callback thread),
    unless the caller cancelled it meanwhile."""
    if not future.set_running_or_notify_cancel():
        return
    if success:
        future.set_result(value)
    else:
        future.set_exception(value)


class ProcessPoolExecutor(Executor):
    """An executor whose workers are a Dask cluster's.

    ``client``, ``address``: as for ``ferropool.dask.Pool`` (neither: a
    ``LocalCluster`` of ``max_workers`` single-threaded processes).
    ``submit`` returns a ``concurrent.futures.Future``; ``cancel()`` on one
    not yet finished cancels its task on the cluster. ``map`` reads its
    input lazily, at most ``buffersize`` chunks ahead (default: 4 per worker
    thread), and cancels the rest when the caller stops reading or a result
    raises. ``shutdown(cancel_futures=True)`` cancels every task not
    finished. ``max_tasks_per_child`` is accepted and not applied (the
    cluster owns its worker processes)."""

    def __init__(
        self,
        max_workers: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: Optional[int] = None,
        client: Any = None,
        address: Optional[str] = None,
        serializer: Any = None,
        task_timeout: Optional[float] = None,
    ) -> None:
        _arguments.executor_arguments(max_workers, initializer, max_tasks_per_child, None, None)
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._shutdown = False
        self._pending: set[Future[Any]] = set()
        self._session = Session(
            client,
            address,
            max_workers,
            serializer,
            True,
            initializer,
            initargs,
            task_timeout,
        )

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this executor submits to."""
        return self._session.client

    def stats(self) -> PoolStats:
        """What each Dask worker did for this executor (chunks as tasks, the time
        they took, bytes of tasks and results), as ``ferropool.Pool.stats()``
        reports its workers; each listed with its address."""
        return self._session.stats()  # type: ignore[no-any-return]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Runs ``fn(*args, **kwargs)`` on a worker; returns its Future."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        _arguments.check_callable(fn)
        future: Future[Any] = Future()
        try:
            payload = self._session.serializer.call(args, kwargs)
            job = self._session.new_job(fn)
        except Exception as e:
            # As the stdlib's: what cannot be sent fails its own future.
            _settle(future, False, e)
            return future
        with self._lock:
            self._pending.add(future)

        def done(f: Future[Any]) -> None:
            with self._lock:
                self._pending.discard(f)
            if f.cancelled():
                job.cancel()

        future.add_done_callback(done)
        job.run(APPLY, payload, lambda ok, value: _settle(future, ok, value))
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> Iterator[Any]:
        """Like ``map(fn, *iterables)`` on the cluster, results in order;
        the input is read lazily (see the class)."""
        _arguments.check_executor_chunksize(chunksize)
        _arguments.check_buffersize(buffersize)
        _arguments.check_progress(progress)
        total = None
        if progress is not None and all(hasattr(it, "__len__") for it in iterables):
            total = min((len(it) for it in iterables), default=0)  # type: ignore[arg-type]
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        end_time = None if timeout is None else timeout + time.monotonic()
        window = buffersize or CHUNKS_IN_FLIGHT_PER_WORKER * (
            self._max_workers or self._session.worker_threads()
        )
        try:
            job = self._session.new_job(fn)
        except Exception as e:
            # As the stdlib's: a function that cannot be sent fails the
            # first result.
            return _raising(e)
        tracker = make_progress(progress, total, items_as_counted, "map")
        results = IMapIterator(
            job, STARMAP, zip(*iterables), chunksize, True, window, _timeout_error, tracker
        )
        return _results_until(results, end_time)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; with ``cancel_futures`` every task not
        finished is cancelled; with ``wait``, returns once the rest is done
        and the cluster let go (else that happens in the background)."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for f in pending:
                f.cancel()
            self._session.cancel_all()
        if wait:
            self._end()
        else:
            threading.Thread(target=self._end, name="ferropool-dask-shutdown", daemon=True).start()

    def _end(self) -> None:
        self._session.wait_idle()
        self._session.close()


def _raising(error: BaseException) -> Iterator[Any]:
    raise error
    yield  # a generator: raises at the first next()


def _results_until(results: IMapIterator, end_time: Optional[float]) -> Iterator[Any]:
    """The results of `results` in order; at the first exception, or when
    the caller stops reading, the chunks still in flight are cancelled."""
    try:
        while True:
            left = None if end_time is None else max(0.0, end_time - time.monotonic())
            try:
                yield results.next(left)
            except StopIteration:
                return
    finally:
        results.stop()
