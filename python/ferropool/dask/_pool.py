"""``ferropool.dask.Pool``: the API of ``multiprocessing.Pool`` (and of
``ferropool.Pool``) on a Dask cluster. One Dask task per chunk; the function
travels once per job; lazy maps keep a bounded number of chunks in flight."""

from __future__ import annotations

import functools
import itertools

from .. import _arguments
from .._native import APPLY, MAP, STARMAP
from .._progress import fixed_chunks, make_progress
from ._results import ApplyResult, AsyncResult, IMapIterator, MapResult, items_as_counted
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, List, Optional

    from .._stats import PoolStats

__all__ = ["Pool"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
# Chunks a lazy map keeps submitted and not yet consumed, per worker thread
# of the cluster (the default of `buffersize`): enough to keep every worker
# busy across the round trips to the scheduler.
CHUNKS_IN_FLIGHT_PER_WORKER = 4


class Pool:
    """A pool whose workers are a Dask cluster's.

    ``client``: a ``distributed.Client`` to use (left open at the end);
    ``address``: a scheduler to connect to (the client is closed at the
    end); neither: a ``LocalCluster`` of ``processes`` single-threaded worker
    processes on this machine, started now and closed at the end.

    The rest is ``ferropool.Pool``'s API and semantics: results in input
    order, a task's exception raised by ``get()`` with its worker's
    traceback as its cause, a worker that dies fails only the chunk it ran
    (``WorkerLostError``, once Dask's own retries on other workers are spent).
    Start methods do not apply; ``maxtasksperchild`` is accepted and not
    applied (the cluster owns its worker processes); ``initializer`` runs
    once in each worker process before its first task of this pool (a Dask
    worker plugin, removed at the end)."""

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: Optional[int] = None,
        *,
        client: Any = None,
        address: Optional[str] = None,
        serializer: Any = None,
        task_timeout: Optional[float] = None,
    ) -> None:
        _arguments.pool_arguments(processes or 1, initializer, maxtasksperchild, task_timeout, None)
        self._state = RUN
        self._session = Session(
            client, address, processes, serializer, False, initializer, initargs, task_timeout
        )
        self._processes = processes

    def __repr__(self) -> str:
        return f"<ferropool.dask.Pool state={self._state} client={self._session.client!r}>"

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this pool submits to."""
        return self._session.client

    def stats(self) -> PoolStats:
        """What each Dask worker did for this pool (chunks as tasks, the time
        they took, bytes of tasks and results), as ``ferropool.Pool.stats()``
        reports its workers; each listed with its address."""
        return self._session.stats()  # type: ignore[no-any-return]

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _workers(self) -> int:
        return self._processes or self._session.worker_threads()

    # ----- submitting ------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Any = None) -> Any:
        """``func(*args, **kwds)`` on a worker; waits for its value."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Optional[dict[str, Any]] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
    ) -> ApplyResult:
        """``func(*args, **kwds)`` on a worker, without waiting."""
        self._check_running()
        _arguments.check_callable(func)
        payload = self._session.serializer.call(tuple(args), dict(kwds or {}))
        job = self._session.new_job(func)
        result = ApplyResult(job, callback, error_callback)
        job.run(APPLY, payload, result._settle)
        return result

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        *,
        progress: Any = None,
    ) -> List[Any]:
        """``list(map(func, iterable))`` on the cluster, in input order."""
        result = self._map_async(func, iterable, MAP, chunksize, None, None, progress)
        return result.get()  # type: ignore[no-any-return]

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        *,
        progress: Any = None,
    ) -> List[Any]:
        """``map`` with each item unpacked as the arguments."""
        result = self._map_async(func, iterable, STARMAP, chunksize, None, None, progress)
        return result.get()  # type: ignore[no-any-return]

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
        *,
        progress: Any = None,
    ) -> MapResult:
        """``map`` without waiting."""
        return self._map_async(func, iterable, MAP, chunksize, callback, error_callback, progress)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[List[Any]], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
        *,
        progress: Any = None,
    ) -> MapResult:
        """``starmap`` without waiting."""
        return self._map_async(
            func, iterable, STARMAP, chunksize, callback, error_callback, progress
        )

    def _map_async(
        self,
        func: Any,
        iterable: Iterable[Any],
        mode: int,
        chunksize: Optional[int],
        callback: Any,
        error_callback: Any,
        progress: Any = None,
    ) -> MapResult:
        self._check_running()
        _arguments.check_callable(func)
        _arguments.check_pool_chunksize(chunksize)
        _arguments.check_progress(progress)
        sized = hasattr(iterable, "__len__")
        if not sized:
            try:
                iterable = list(iterable)  # the stdlib's map lists it too
            except Exception as e:
                # As ferropool.Pool, which reads such input lazily: the
                # input's error is the result's.
                job = self._session.new_job(func)
                failed = MapResult(job, callback, error_callback, 1, 1)
                failed.chunk_done(0, False, e)
                return failed
        items: Any = iterable
        length = len(items)
        if chunksize is None:
            chunksize, extra = divmod(length, self._workers() * 4)
            if extra:
                chunksize += 1
        chunksize = max(chunksize, 1)
        # Every chunk is pickled before any is submitted: an item that cannot
        # be sent fails the call here, naming it, with nothing started.
        serializer = self._session.serializer
        payloads = []
        it = iter(items)
        for first in range(0, length, chunksize):
            chunk = list(itertools.islice(it, chunksize))
            payloads.append(serializer.chunk(chunk, first))
        job = self._session.new_job(func)
        # As ferropool.Pool, which reads input without a length lazily: its
        # progress has no total.
        total = length if sized else None
        per_chunk = fixed_chunks(chunksize)
        tracker = make_progress(progress, total, lambda n: min(per_chunk(n), length), "map")
        result = MapResult(job, callback, error_callback, length, chunksize, tracker)
        for index, payload in enumerate(payloads):
            job.run(mode, payload, functools.partial(result.chunk_done, index))
        return result

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        buffersize: Optional[int] = None,
        progress: Any = None,
    ) -> IMapIterator:
        """Lazy, ordered ``map``: input is read as the cluster needs it, at
        most ``buffersize`` chunks submitted and not yet consumed (default:
        4 per worker thread of the cluster)."""
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
        progress: Any,
    ) -> IMapIterator:
        self._check_running()
        _arguments.check_callable(func)
        _arguments.check_pool_chunksize(chunksize)
        _arguments.check_buffersize(buffersize)
        _arguments.check_progress(progress)
        window = buffersize or CHUNKS_IN_FLIGHT_PER_WORKER * self._workers()
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        what = "imap" if ordered else "imap_unordered"
        tracker = make_progress(progress, total, items_as_counted, what)
        job = self._session.new_job(func)
        return IMapIterator(job, MAP, iterable, chunksize, ordered, window, progress=tracker)

    # ----- ending ----------------------------------------------------------

    def close(self) -> None:
        """No more work will be submitted; what was submitted still runs."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Cancels every chunk in flight on the cluster and lets the cluster
        go (closing the client and cluster this pool started)."""
        if self._state == TERMINATE:
            return
        self._state = TERMINATE
        self._session.cancel_all()
        self._session.close()

    def join(self) -> None:
        """Waits for the submitted work to end (after ``close``), then lets
        the cluster go."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        self._session.wait_idle()
        self._session.close()


__all__ += ["AsyncResult", "ApplyResult", "MapResult", "IMapIterator"]
