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
import time
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
# A client that has not been connected to its scheduler for this long (it
# reconnects by itself meanwhile) has lost the work in flight; how often
# that is looked at while work is in flight.
SCHEDULER_LOST_AFTER = 10.0
WATCH_EVERY = 0.5
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
            # Not the process's default client: dask.compute elsewhere in the
            # program must not start running on this pool's cluster.
            self.client = Client(address, set_as_default=False)  # type: ignore[no-untyped-call]
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
            self.client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
            self._owned.append(self.client)
        log.info("ferropool.dask: the Dask dashboard is at %s", self.client.dashboard_link)
        self.name = f"ferropool-{uuid.uuid4().hex[:12]}"
        self._jobs = itertools.count()
        self._lock = threading.Condition()
        # Every chunk task not yet delivered: its job, who gets its outcome,
        # the bytes it sent.
        self._in_flight: Dict[Any, tuple[Job, Outcome, int]] = {}
        self._watchdog: Optional[threading.Thread] = None
        self.broken: Optional[str] = None
        # For stats(): per Dask worker address, what it did for this session.
        self._figures: Dict[str, _WorkerFigures] = {}
        # Keys of the chunks cancelled on purpose (terminate, Ctrl-C, a map
        # that failed): any other cancellation is the cluster's doing.
        self._cancelled: set[Any] = set()
        # Lazy maps still reading input (see _results.IMapIterator).
        self.feeders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._plugin: Optional[str] = None
        # Functions already on the cluster, by their pickle (latest last).
        self._functions: Dict[bytes, Any] = {}
        self.closed = False
        if initializer is not None:
            try:
                # Dask runs it on every worker now: one that raises fails
                # the constructor with its own error.
                self._register_initializer(initializer, tuple(initargs))
            except BaseException:
                self.close()  # the cluster and client made for this pool
                raise

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
        if self.broken is not None:
            from .._errors import BrokenProcessPool

            raise BrokenProcessPool(self.broken)
        sent = len(payload)
        if isinstance(job.function_ref, bytes):
            sent += len(job.function_ref)
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
            self._in_flight[future] = (job, on_outcome, sent)
            job.futures.add(future)
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch_scheduler, name=f"{self.name}-watchdog", daemon=True
                )
                self._watchdog.start()
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
        self._deliver(future, outcome)

    def _deliver(self, future: Any, outcome: tuple[bool, Any]) -> None:
        """Gives a chunk's outcome to its receiver, once (the watchdog and
        Dask's callback may both try)."""
        with self._lock:
            entry = self._in_flight.pop(future, None)
            self._cancelled.discard(future.key)
        if entry is None:
            return
        job, on_outcome, _ = entry
        try:
            on_outcome(*outcome)
        finally:
            with self._lock:
                job.futures.discard(future)
                self._lock.notify_all()

    def _watch_scheduler(self) -> None:
        """While chunks are in flight, makes sure the scheduler is still
        there: a client that lost it for SCHEDULER_LOST_AFTER seconds (or
        closed) will never see those chunks end, so they fail with
        BrokenProcessPool and later submissions are refused, instead of
        every wait hanging."""
        lost_since: Optional[float] = None
        while not self.closed:
            time.sleep(WATCH_EVERY)
            status = self.client.status
            if status == "running":
                lost_since = None
                continue
            now = time.monotonic()
            lost_since = lost_since or now
            with self._lock:
                idle = not self._in_flight
            if idle and status in ("closed", "closing", "failed"):
                return  # its client closed with nothing in flight: nothing lost
            if status in ("closed", "closing", "failed") or now - lost_since > SCHEDULER_LOST_AFTER:
                self._break(f"lost the Dask scheduler at {self._address()} (client {status})")
                return

    def _address(self) -> str:
        try:
            return str(self.client.scheduler.address)
        except Exception:
            return "?"

    def _break(self, reason: str) -> None:
        from .._errors import BrokenProcessPool

        self.broken = reason
        log.error("ferropool.dask: %s: failing the work in flight", reason)
        with self._lock:
            futures = list(self._in_flight)
        for future in futures:
            self._deliver(future, (False, BrokenProcessPool(reason)))

    def wait_idle(self) -> None:
        """Waits until every lazy map has read its input and every chunk
        submitted has its outcome delivered (``join`` after ``close``); the
        lazy maps' windows are opened first, so none waits for a consumer."""
        for feeder in list(self.feeders):
            feeder.unbound()
        with self._lock:
            while self._in_flight or any(f.feeding() for f in list(self.feeders)):
                if self.broken is not None:
                    break
                self._lock.wait(0.1)

    def _outcome(self, future: Any) -> Optional[tuple[bool, Any]]:
        """The decoded outcome of a done future; None if it is not done
        after all (lost with its worker, to be computed again)."""
        status = future.status
        if status == "finished":
            try:
                code, data, address, pid, seconds = future.result()
            except Exception:
                if future.status in ("lost", "pending"):
                    return None
                raise
            self._count(future, address, pid, seconds, len(data))
            return decode(code, data, self.executor)
        if status == "cancelled":
            if future.key in self._cancelled:
                from concurrent.futures import CancelledError

                return False, CancelledError(f"{future.key} was cancelled on the cluster")
            return False, self._cancelled_by_dask(future)
        if status in ("lost", "pending"):
            return None
        error = future.exception()
        if not isinstance(error, BaseException):
            error = RuntimeError(f"{future.key} ended as {status!r} on the cluster")
        return False, _cluster_error(future.key, error)

    def _cancelled_by_dask(self, future: Any) -> BaseException:
        """A chunk Dask cancelled by itself: its client lost the scheduler
        (the whole session is broken then) or the cluster dropped it."""
        from .._errors import BrokenProcessPool

        try:
            reason = repr(future.exception(timeout=0))
        except BaseException as e:
            reason = repr(e)
        if self.client.status != "running":
            self.broken = f"lost the Dask scheduler at {self._address()} ({reason})"
            return BrokenProcessPool(self.broken)
        return BrokenProcessPool(f"the Dask cluster cancelled {future.key}: {reason}")

    def _count(self, future: Any, address: str, pid: int, seconds: float, received: int) -> None:
        with self._lock:
            entry = self._in_flight.get(future)
            figures = self._figures.get(address)
            if figures is None:
                figures = self._figures[address] = _WorkerFigures(len(self._figures), pid)
            figures.pid = pid  # a worker restarted by its nanny keeps its address
            figures.tasks_done += 1
            figures.busy_seconds += seconds
            figures.bytes_sent += entry[2] if entry is not None else 0
            figures.bytes_received += received

    def stats(self) -> Any:
        """A PoolStats of the Dask workers that ran this session's chunks
        (ferropool.Pool's, see _stats); workers that left the cluster are
        the cluster's business: none is listed as ended."""
        from .._stats import PoolStats, WorkerStats

        now = time.monotonic()
        with self._lock:
            workers = tuple(
                WorkerStats(
                    number=f.number,
                    pid=f.pid,
                    state="ready",
                    age_seconds=now - f.first_seen,
                    tasks_done=f.tasks_done,
                    busy_seconds=f.busy_seconds,
                    bytes_sent=f.bytes_sent,
                    bytes_received=f.bytes_received,
                    address=address,
                )
                for address, f in self._figures.items()
            )
        return PoolStats(
            workers=workers,
            ended=(),
            tasks_done=sum(w.tasks_done for w in workers),
            busy_seconds=sum(w.busy_seconds for w in workers),
            bytes_sent=sum(w.bytes_sent for w in workers),
            bytes_received=sum(w.bytes_received for w in workers),
            workers_started=len(workers),
            workers_ended=0,
            unexpected_deaths=0,
        )

    def cancel(self, futures: List[Any]) -> None:
        with self._lock:
            self._cancelled.update(f.key for f in futures)
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


class _WorkerFigures:
    """What one Dask worker did for a session (see Session.stats)."""

    def __init__(self, number: int, pid: int) -> None:
        self.number = number
        self.pid = pid
        self.first_seen = time.monotonic()
        self.tasks_done = 0
        self.busy_seconds = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0


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
