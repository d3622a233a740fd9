"""A pool's or executor's hold on a Dask cluster: the client (given, connected
to an address, or that of a local cluster started for it), the jobs'
functions, and every chunk task in flight, so that terminate and Ctrl-C can
cancel them.

    caller: pickle func once (small: in each task; large: scattered once)
            pickle chunk ──submit(run_chunk, func, chunk)──▶ a Dask worker
    Dask's callback thread ◀── (status, bytes) ── run_chunk (see ferropool._cluster_tasks)
            decode (as locally) ──▶ on_outcome(success, value)
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import uuid
import weakref

from .. import _cluster_tasks
from .._decoding import decode
from .._serializers import serializer_from
from . import _remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    Outcome = Callable[[bool, Any], None]

log = logging.getLogger("ferropool.dask")

# Functions whose pickles a session keeps on the cluster for later jobs.
KEPT_FUNCTIONS = 64
# A function pickled into at most this many bytes goes inside every chunk's
# task instead of being scattered (see Session.new_job).
INLINE_FUNCTION_MAX = 4096


class Job:
    """One call of apply/submit/map: its function, scattered once."""

    def __init__(self, session: Session, key: str, function: Any) -> None:
        self.session = session
        self.key = key
        # The function's pickle, or its data scattered on the cluster.
        self.function_ref = function
        self.futures: set[Any] = set()
        self._tasks = itertools.count()

    def run(self, mode: int, payload: bytes, on_outcome: Outcome) -> None:
        """Submits one chunk (or call); `on_outcome` gets its decoded
        outcome, in a Dask callback thread."""
        self.session.run(self, next(self._tasks), mode, payload, on_outcome)

    def cancel(self) -> None:
        futures = list(self.futures)
        if futures:
            self.session.cancel(futures)


class Session:
    def __init__(
        self,
        client: Any,
        address: Optional[str],
        workers: Optional[int],
        serializer: Any,
        executor: bool,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Any = (),
        task_timeout: Optional[float] = None,
    ) -> None:
        from distributed import Client

        self.executor = executor
        self.task_timeout = task_timeout
        self.serializer = serializer_from(serializer).as_bytes()
        self._owned: List[Any] = []  # closed by close(), last first
        if client is not None:
            if address is not None:
                raise ValueError("give a Dask client or an address, not both")
            self.client = client
        elif address is not None:
            self.client = Client(address)  # type: ignore[no-untyped-call]
            self._owned.append(self.client)
        else:
            from distributed import LocalCluster

            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.WARNING,
            )
            self._owned.append(cluster)
            self.client = Client(cluster)  # type: ignore[no-untyped-call]
            self._owned.append(self.client)
        log.info("ferropool.dask: the Dask dashboard is at %s", self.client.dashboard_link)
        self.name = f"ferropool-{uuid.uuid4().hex[:12]}"
        self._jobs = itertools.count()
        self._lock = threading.Condition()
        self._in_flight: set[Any] = set()
        # Lazy maps still reading input (see _results.IMapIterator).
        self.feeders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._plugin: Optional[str] = None
        # Functions already on the cluster, by their pickle (latest last).
        self._functions: Dict[bytes, Any] = {}
        self.closed = False
        if initializer is not None:
            self._register_initializer(initializer, tuple(initargs))

    def _register_initializer(self, initializer: Callable[..., Any], initargs: Any) -> None:
        plugin = _remote.Initializer(
            self.serializer.function(initializer),
            self.serializer.call(initargs, {}),
            self.serializer.for_workers,
        )
        name = f"{self.name}-initializer"
        self.client.register_plugin(plugin, name=name)
        self._plugin = name

    def worker_threads(self) -> int:
        """How many tasks the cluster runs at once (its worker threads)."""
        threads: int = sum(self.client.nthreads().values())
        return max(1, threads)

    def new_job(self, func: Any) -> Job:
        """A job of `func`, pickled once. A small pickle (a function named by
        its module, the usual case) travels inside each chunk's task, where
        it costs no more than the task's key; a large one (a closure holding
        data) goes to every worker once, and the jobs of a function whose
        pickle is the same share it."""
        pickled = self.serializer.function(func)
        if len(pickled) <= INLINE_FUNCTION_MAX:
            return Job(self, f"{self.name}-{next(self._jobs)}", pickled)
        with self._lock:
            function = self._functions.get(pickled)
        if function is None:
            # On every worker: Dask runs a task where its dependencies are,
            # so a function held by one worker would draw every chunk there.
            ref = self.client.scatter(pickled, hash=False, broadcast=True)
            function = ref
            with self._lock:
                self._functions[pickled] = function
                while len(self._functions) > KEPT_FUNCTIONS:
                    self._functions.pop(next(iter(self._functions)))
        return Job(self, f"{self.name}-{next(self._jobs)}", function)

    def run(self, job: Job, index: int, mode: int, payload: bytes, on_outcome: Outcome) -> None:
        future = self.client.submit(
            _cluster_tasks.run_chunk,
            job.function_ref,
            mode,
            payload,
            self.executor,
            self.serializer.for_workers,
            self.task_timeout,
            key=f"{job.key}-{index}",
            pure=False,
        )
        with self._lock:
            self._in_flight.add(future)
            job.futures.add(future)
        future.add_done_callback(lambda f: self._finished(job, f, on_outcome))

    def _finished(self, job: Job, future: Any, on_outcome: Outcome) -> None:
        try:
            outcome = self._outcome(future)
        except BaseException as e:  # never lose an outcome
            outcome = (False, e)
        if outcome is None:
            # Its result went with its worker before it could be fetched:
            # Dask computes it again (this client still holds the future).
            future.add_done_callback(lambda f: self._finished(job, f, on_outcome))
            return
        try:
            on_outcome(*outcome)
        finally:
            with self._lock:
                self._in_flight.discard(future)
                job.futures.discard(future)
                self._lock.notify_all()

    def wait_idle(self) -> None:
        """Waits until every lazy map has read its input and every chunk
        submitted has its outcome delivered (``join`` after ``close``); the
        lazy maps' windows are opened first, so none waits for a consumer."""
        for feeder in list(self.feeders):
            feeder.unbound()
        with self._lock:
            while self._in_flight or any(f.feeding() for f in list(self.feeders)):
                self._lock.wait(0.1)

    def _outcome(self, future: Any) -> Optional[tuple[bool, Any]]:
        """The decoded outcome of a done future; None if it is not done
        after all (lost with its worker, to be computed again)."""
        status = future.status
        if status == "finished":
            try:
                code, data = future.result()
            except Exception:
                if future.status in ("lost", "pending"):
                    return None
                raise
            return decode(code, data, self.executor)
        if status == "cancelled":
            from concurrent.futures import CancelledError

            return False, CancelledError(f"{future.key} was cancelled on the cluster")
        if status in ("lost", "pending"):
            return None
        error = future.exception()
        if not isinstance(error, BaseException):
            error = RuntimeError(f"{future.key} ended as {status!r} on the cluster")
        return False, _cluster_error(future.key, error)

    def cancel(self, futures: List[Any]) -> None:
        if futures:
            try:
                self.client.cancel(futures, force=True)
            except Exception as e:  # a client already closing
                log.debug("ferropool.dask: cancelling failed: %r", e)

    def cancel_all(self) -> None:
        with self._lock:
            futures = list(self._in_flight)
        self.cancel(futures)

    def close(self) -> None:
        """Releases what this session made on the cluster; closes the client
        and cluster it started (not a client it was given)."""
        if self.closed:
            return
        self.closed = True
        if self._plugin is not None:
            try:
                self.client.unregister_worker_plugin(self._plugin)
            except Exception as e:
                log.debug("ferropool.dask: removing the initializer failed: %r", e)
        for thing in reversed(self._owned):
            try:
                thing.close()
            except Exception as e:
                log.debug("ferropool.dask: closing %r failed: %r", thing, e)


def _cluster_error(key: str, error: BaseException) -> BaseException:
    """A chunk that failed on the cluster rather than in the task: the worker
    running it died (Dask's KilledWorker, once its retries are spent), or Dask
    itself failed it."""
    from distributed.scheduler import KilledWorker

    from .._errors import WorkerLostError

    if isinstance(error, KilledWorker):
        last = getattr(error, "last_worker", None)
        where = getattr(last, "address", None) or "unknown"
        lost = WorkerLostError(
            f"the Dask worker at {where} died while running {key}, and so did every "
            f"worker Dask retried it on (KilledWorker: {error})"
        )
        lost.__cause__ = error
        return lost
    return error
