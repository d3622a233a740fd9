"""The state of a running ``ProcessPoolExecutor``, apart from the object users
hold (see ``executor``): pending work, the engine jobs that carry it, the
futures in flight. The executor's service thread holds this, never the
executor, so an executor nobody references is collected while its work
finishes here.

    submit() ── pickle args ──▶ pending (cancellable) ──dispatch──▶ stream job of fn (running)
    service thread ◀── each outcome ── engine: set the Future, dispatch more
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from concurrent.futures import Future

from ._decoding import decode
from ._errors import BrokenProcessPool
from ._lifecycle import Ownership, executors_at_exit
from ._native import APPLY, POOL_BROKEN, EngineStopped

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, List, Optional

    from ._lifecycle import Running
    from ._serializers import Serializer

# Tasks handed to the engine per worker; the rest wait, cancellable, in Python.
IN_FLIGHT_PER_WORKER = 2
# Functions with a stream of their own at once; the least recently used
# stream is closed when another function needs one.
MAX_STREAMS = 16

SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"
INTERPRETER_SHUTDOWN_MESSAGE = "cannot schedule new futures after interpreter shutdown"

log = logging.getLogger("ferropool")


if TYPE_CHECKING:
    _FutureOfAny = Future[Any]
else:  # `typing` is not imported at run time
    _FutureOfAny = Future


class EngineFuture(_FutureOfAny):
    """The executor's futures. `result()` and `exception()` wait on the
    engine's job themselves and settle what has arrived in the waiting
    thread: one hand-over fewer than waiting for the service thread to settle
    the future and wake this thread. A future with done-callbacks is still
    settled by the service thread, where the stdlib's executor runs them."""

    def __init__(self) -> None:
        super().__init__()
        # (core, engine job) once the work is handed to the engine.
        self._carried_by: Optional[tuple[Any, ...]] = None

    def has_done_callbacks(self) -> bool:
        return bool(self._done_callbacks)  # type: ignore[attr-defined]

    def result(self, timeout: Optional[float] = None) -> Any:
        return super().result(self._wait_for_engine(timeout))

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        return super().exception(self._wait_for_engine(timeout))

    def _wait_for_engine(self, timeout: Optional[float]) -> Optional[float]:
        """Waits until this future is settled, settling arrived outcomes
        meanwhile; returns what is left of `timeout`."""
        carried_by = self._carried_by
        if carried_by is None or self.done():
            return timeout
        core, job = carried_by
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Read before looking at the state: a take or settle by another
            # thread after this point makes wait_change return.
            seen = job.changes()
            if self.done():
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                changed = job.wait_change(seen, left)
            except BaseException:
                # Interrupted: what arrived meanwhile was announced to no one.
                core.outcomes_arrived(job.id, in_caller=True)
                raise
            if not changed:
                break
            core.outcomes_arrived(job.id, in_caller=True)
        return None if deadline is None else max(0.0, deadline - time.monotonic())


class _WorkItem:
    __slots__ = ("future", "fn", "payload")

    def __init__(self, future: EngineFuture, fn: Callable[..., Any], payload: bytes):
        self.future = future
        self.fn = fn
        self.payload = payload


class _Stream:
    """One engine job carrying every call of one function. It refers to the
    function weakly where it can (the work items in flight hold it), so a
    function, or the object of a bound method, is freed once its calls are
    done; a function that takes no weak reference is held, and its stream
    closed once idle."""

    __slots__ = ("_ref", "_strong", "job", "next_index", "in_flight", "closed")

    def __init__(self, fn: Callable[..., Any], job: Any, on_dead: Callable[[Any], None]) -> None:
        try:
            self._ref: Optional[weakref.ref[Any]] = weakref.ref(fn, on_dead)
            self._strong: Any = None
        except TypeError:
            self._ref = None
            self._strong = fn
        self.job = job
        self.next_index = 0
        self.in_flight: Dict[int, _WorkItem] = {}
        self.closed = False

    def target(self) -> Any:
        return self._strong if self._ref is None else self._ref()

    def holds_its_function(self) -> bool:
        return self._ref is None


class ExecutorCore:
    """Submitting, dispatching and settling futures for one executor. Every
    method may be called from any thread; the lock is re-entrant because a
    future's done-callbacks run where it is settled, and may submit."""

    def __init__(self, running: Running, max_workers: int, serializer: Serializer) -> None:
        self.running = running
        self.serializer = serializer
        self.engine = running.engine
        self.lock = threading.RLock()
        self.pending: Deque[_WorkItem] = collections.deque()
        self.in_flight = 0
        self.in_flight_limit = max_workers * IN_FLIGHT_PER_WORKER
        # Jobs of map() calls whose results are still being read.
        self.map_jobs: weakref.WeakSet[Any] = weakref.WeakSet()
        # Progress of map() calls with progress=, by job id (see _progress).
        self.tracked: Dict[int, Any] = {}
        # Streams by id(fn), most recently used last; and by engine job id.
        self.streams: collections.OrderedDict[int, _Stream] = collections.OrderedDict()
        self.by_job: Dict[int, _Stream] = {}
        # Weak references whose function died (appended from any thread,
        # by the weakref callback; streams are closed under the lock later).
        self.dead_functions: Deque[Any] = collections.deque()
        # Outcomes a waiting caller took for futures with done-callbacks: the
        # service thread settles them (it hears of each outcome after it
        # arrived, so after the take). (stream, item, status, payload)
        self.for_service: List[tuple[Any, ...]] = []
        self.shutdown = False
        self.engine_closed = False
        self.broken: Optional[str] = None
        self.owner = Ownership()

    # ----- submitting ----------------------------------------------------

    def check_open(self) -> None:
        if self.owner.foreign():
            raise self.owner.refuse("executor")
        if self.broken is None:
            reason = self.engine.broken()
            if reason is not None:
                self._break(reason)
        if self.broken is not None:
            raise BrokenProcessPool(self.broken)
        # The exit hook shuts executors down too: say why.
        if executors_at_exit.exiting:
            raise RuntimeError(INTERPRETER_SHUTDOWN_MESSAGE)
        if self.shutdown:
            raise RuntimeError(SHUTDOWN_MESSAGE)

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        with self.lock:
            self.check_open()
            future = EngineFuture()
            try:
                item = _WorkItem(future, fn, self.serializer.call(args, kwargs))
            except Exception as e:
                # As the stdlib: an argument that cannot be pickled fails its
                # own future; the executor carries on.
                future.set_exception(e)
                return future
            self.pending.append(item)
            self.dispatch()
        return future

    def _stream_for(self, fn: Callable[..., Any]) -> _Stream:
        """The stream of `fn`, made on first use (lock held)."""
        if self.dead_functions:
            self._close_dead_streams()
        stream = self.streams.get(id(fn))
        if stream is not None and stream.target() is fn:
            self.streams.move_to_end(id(fn))
            return stream
        job = self.engine.new_job(self.serializer.function(fn), APPLY, False, True)
        if stream is not None:
            self._close_stream(stream)  # an earlier function with the same id
        stream = _Stream(fn, job, self.dead_functions.append)
        self.streams[id(fn)] = stream
        self.by_job[job.id] = stream
        while len(self.streams) > MAX_STREAMS:
            _, old = self.streams.popitem(last=False)
            self._close_stream(old)
        return stream

    def _close_dead_streams(self) -> None:
        self.dead_functions.clear()
        for key, stream in list(self.streams.items()):
            if stream.target() is None:
                del self.streams[key]
                self._close_stream(stream)

    def _close_stream(self, stream: _Stream) -> None:
        if not stream.closed:
            stream.closed = True
            try:
                self.engine.add_tasks(stream.job, stream.next_index, [], True)
            except EngineStopped:
                pass  # the engine already stopped: the job was failed there
        if not stream.in_flight:
            self.by_job.pop(stream.job.id, None)

    def dispatch(self) -> None:
        """Hands pending work to the engine while there is room (lock held)."""
        while self.pending and self.broken is None:
            if self.in_flight >= self.in_flight_limit:
                break
            item = self.pending.popleft()
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                stream = self._stream_for(item.fn)
            except EngineStopped:
                self._break(self.engine.broken() or "the pool's engine has stopped")
                item.future.set_exception(BrokenProcessPool(self.broken))
                continue
            except Exception as e:  # the function cannot be pickled
                item.future.set_exception(e)
                continue
            index = stream.next_index
            stream.next_index += 1
            try:
                self.engine.add_tasks(stream.job, index, [item.payload], False)
            except EngineStopped:
                # The engine has stopped (the pool broke meanwhile).
                self._break(self.engine.broken() or "the pool's engine has stopped")
                item.future.set_exception(BrokenProcessPool(self.broken))
                continue
            stream.in_flight[index] = item
            item.future._carried_by = (self, stream.job)
            self.in_flight += 1
        if self.shutdown and not self.pending and not self.engine_closed:
            # Close only once nothing waits here: the engine stops its workers
            # as soon as it has no open jobs left.
            self.engine_closed = True
            for stream in list(self.streams.values()):
                self._close_stream(stream)
            self.streams.clear()
            self.engine.close()

    def _break(self, reason: str) -> None:
        """The pool broke (lock held): pending work fails, nothing more runs."""
        if self.broken is not None:
            return
        self.broken = reason
        waiting, self.pending = self.pending, collections.deque()
        for item in waiting:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(BrokenProcessPool(reason))

    # ----- outcomes (service thread) ---------------------------------------

    def outcomes_arrived(self, job_id: int, in_caller: bool = False) -> None:
        """Settles the futures of a stream's new outcomes: in the service
        thread, or `in_caller`, in a thread waiting for one of them (see
        EngineFuture), which leaves futures with done-callbacks to the
        service thread."""
        tracker = self.tracked.get(job_id)
        if tracker is not None:
            self._count_progress(job_id, tracker)
            return
        taken: List[tuple[Any, ...]] = []
        with self.lock:
            stream = self.by_job.get(job_id)
            if stream is not None:
                # Taken under the lock: the service thread, when it hears of
                # these outcomes, takes them or finds what a caller left it.
                left_for_service = len(self.for_service)
                for index, status, payload in stream.job.take():
                    item = stream.in_flight.pop(index, None)
                    if item is None:
                        # A second outcome for one task (the pool broke just
                        # as it was sent, which fails it twice): the first
                        # one stands.
                        continue
                    if in_caller and item.future.has_done_callbacks():
                        self.for_service.append((stream, item, status, payload))
                    else:
                        taken.append((stream, item, status, payload))
                if len(self.for_service) > left_for_service:
                    # Not announced while this thread waited: say so.
                    self.engine.notify_service(stream.job)
            if not in_caller and self.for_service:
                taken += self.for_service
                self.for_service = []
        if not taken:
            return
        settled: List[tuple[Any, ...]] = []
        broken = None
        for _, item, status, payload in taken:
            success, value = decode(status, payload, executor=True)
            if status == POOL_BROKEN:
                broken = str(value)
            settled.append((item, success, value))
        streams = {id(s): s for s, _, _, _ in taken}
        taken.clear()
        count = len(settled)
        settled.reverse()
        while settled:
            # Popped, not iterated: once settled, a result is held only by
            # its future (one the caller dropped frees it).
            item, success, value = settled.pop()
            _settle(item.future, success, value)
        item = value = None
        for stream in streams.values():
            stream.job.settled()
        with self.lock:
            self.in_flight -= count
            for stream in streams.values():
                self._retire_if_idle(stream)
            if broken is not None:
                self._break(broken)
            if self.broken is None:
                self.dispatch()
            elif self.shutdown and not self.engine_closed:
                self.engine_closed = True
                self.engine.close()

    def _count_progress(self, job_id: int, tracker: Any) -> None:
        """A map with progress= had an outcome (service thread)."""
        for job in list(self.map_jobs):
            if job.id == job_id:
                tracker.chunks_arrived(job.counts()[0])
                if job.complete():  # counted again: more may have come meanwhile
                    self.tracked.pop(job_id, None)
                    tracker.finish(job.counts()[0])
                return
        self.tracked.pop(job_id, None)  # its results were dropped: nobody to show them to

    def _retire_if_idle(self, stream: _Stream) -> None:
        """A stream with nothing in flight: forgotten once closed; closed
        when it holds its function (lock held)."""
        if stream.in_flight:
            return
        if stream.closed:
            self.by_job.pop(stream.job.id, None)
        elif stream.holds_its_function():
            self._close_stream(stream)
            for key, other in list(self.streams.items()):
                if other is stream:
                    del self.streams[key]

    # ----- stopping ------------------------------------------------------

    def begin_shutdown(self, cancel_futures: bool = False) -> None:
        if self.owner.foreign():
            return  # the parent's: nothing of it runs here
        with self.lock:
            self.shutdown = True
            if cancel_futures:
                for item in self.pending:
                    item.future.cancel()
                self.pending.clear()
            for job in list(self.map_jobs):
                # Lazy maps read no more input; with cancel_futures, chunks
                # not yet sent to a worker are cancelled too.
                if cancel_futures:
                    try:
                        self.engine.cancel_queued(job)
                    except EngineStopped:
                        pass  # nothing is queued in a stopped engine
                else:
                    job.stop_feeding()
            self.dispatch()

    def wait_stopped(self) -> None:
        """Waits until the engine has ended, its service thread included."""
        if self.owner.foreign():
            return
        self.running.wait_stopped()
        executors_at_exit.discard(self)

    # At interpreter exit (see _lifecycle.ExitRegistry): the work given runs.
    _stop_at_exit = begin_shutdown
    _wait_at_exit = wait_stopped

    def map_input_cut(self, fail: Callable[[BaseException], None]) -> None:
        """A lazy map's feeder stopped before the end of its input: after a
        shutdown, the results end with the stdlib's error for a submit."""
        if self.shutdown:
            fail(RuntimeError(SHUTDOWN_MESSAGE))


def _settle(future: Future[Any], success: bool, value: Any) -> None:
    """Sets a future's outcome. Its done-callbacks run here; one that raises
    even SystemExit must not stop the thread that settles the others."""
    try:
        if success:
            future.set_result(value)
        else:
            future.set_exception(value)
    except BaseException:
        log.exception("ferropool: settling a future failed")
