"""Start methods: turning (start method, setup) into a running engine.

The stdlib's rules decide the method: an explicit context, else the
process-wide default (``multiprocessing.set_start_method``). Then:

* ``fork``: as the stdlib, workers are forks of the caller: the first ones
  made now, before this pool's engine thread exists (by the pool's service
  thread when the caller is not the main thread), replacements later by the
  service thread; every engine thread of the process is parked meanwhile.
* ``forkserver``: ask the process's fork server (a fresh interpreter that
  imported ``__main__`` once, started on first use, see ``_forkserver``) for
  a zygote of this pool; that zygote forks the workers.
* ``spawn``: the engine starts a fresh interpreter per worker and sends it the
  preparation data and the pickled setup.

Objects in ``initargs`` that travel by file descriptor (``Value``, ``Array``,
queues) are pickled the way the stdlib pickles them for a child: with a
"spawning popen" in place that collects their fds.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
from multiprocessing import context as mp_context
from multiprocessing import process
from multiprocessing.reduction import ForkingPickler

from . import _native
from ._worker import InheritedFd, WorkerSetup, flush_std_streams, forked_worker_main

# Imported where needed, not here: a short `fork` script would pay for
# `typing`, `logging`, `subprocess` and `multiprocessing.spawn` at start-up
# (the stdlib's own fork pool imports none of them either).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, List, Optional, Tuple

# Bumped in the child of every fork: a pool or executor made before it
# belongs to the parent (its engine thread and service thread do not exist in
# the child), so the child neither uses nor waits for it.
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


class Ownership:
    """Which process a pool or executor belongs to."""

    __slots__ = ("generation", "pid")

    def __init__(self) -> None:
        self.generation = _fork_generation
        self.pid = os.getpid()

    def foreign(self) -> bool:
        """This process is a fork of the owner (or of a fork of it)."""
        return self.generation != _fork_generation

    def refuse(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"this {what} belongs to process {self.pid}; a process forked from it cannot "
            f"use it (make a new one in the child)"
        )


# A crash loop: this many unexpected worker deaths (per worker of the pool,
# at least CRASH_LIMIT_MIN) within CRASH_WINDOW seconds break the pool.
CRASH_LIMIT_PER_WORKER = 5
CRASH_LIMIT_MIN = 10
CRASH_WINDOW = 10.0
# Send and receive buffer of each worker socket (as the engine's own).
WORKER_SOCKET_BUFFER = 1 << 20

WORKER_NAMES = {
    "fork": "ForkPoolWorker",
    "spawn": "SpawnPoolWorker",
    "forkserver": "ForkServerPoolWorker",
}


def start_method_of(ctx: Any) -> str:
    """The start method a (stdlib or ferropool) context stands for."""
    if ctx is None:
        ctx = mp_context._default_context
    method = ctx.get_start_method()
    if method not in WORKER_NAMES:
        raise ValueError(f"ferropool does not support the start method {method!r}")
    return method


class FdCollector:
    """Plays the stdlib's spawning Popen while a setup is pickled: objects
    that travel by fd register theirs here and pickle an `InheritedFd`."""

    DupFd = InheritedFd

    def __init__(self) -> None:
        self.fds: List[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1

    def dumps(self, obj: Any) -> bytes:
        mp_context.set_spawning_popen(self)  # type: ignore[arg-type]
        try:
            return bytes(ForkingPickler.dumps(obj))
        finally:
            mp_context.set_spawning_popen(None)


def _nothing() -> None:
    pass


class Started:
    """A running engine and what its owner (a Pool or an executor) needs
    to serve it; also what stops it when the owner cannot be made."""

    def __init__(
        self,
        engine: Any,
        reap: Callable[[], None],
        fork_worker: Optional[Callable[[int, int, List[int]], None]] = None,
        wait_first: Callable[[], None] = _nothing,
    ) -> None:
        self.engine = engine
        # Waits for helper processes (the forkserver zygote) after the engine finished.
        self.reap = reap
        # `fork`: forks a worker the engine asks for (number, socket fd, fds the
        # new process closes); called through `fork_asked` by the service thread.
        self.fork_worker = fork_worker
        # Blocks until the pool's first workers exist (see _Forker.wait_first).
        self.wait_first = wait_first
        self.service: Optional[threading.Thread] = None

    def start_service(self, serve: Callable[..., None], state: Any, name: str) -> threading.Thread:
        """Starts the owner's service thread: `serve(job_ids, state)` gets
        the ids of the jobs the engine has news for, as they come; the
        thread also forks the workers a `fork` engine asks for, and reaps
        helper processes once the engine has ended (nobody may join it: an
        owner dropped without closing). `state` must not be the owner."""
        self.service = threading.Thread(
            target=_service_main,
            args=(self.engine, self.fork_worker, self.reap, serve, state),
            name=name,
            daemon=True,
        )
        self.service.start()
        return self.service

    def serve(self, serve: Callable[..., None], state: Any, name: str) -> threading.Thread:
        """`start_service`, then waits for the first workers; if either fails
        or is interrupted (Ctrl-C), everything started is stopped (see
        `stop_now`) before the error goes on."""
        try:
            thread = self.start_service(serve, state, name)
            self.wait_first()
        except BaseException:
            self.stop_now()
            raise
        return thread

    def stop_now(self) -> None:
        """The owner could not be made (its constructor failed or was
        interrupted, Ctrl-C included): stop the engine and everything it
        started, so no thread or worker outlives the attempt."""
        self.engine.terminate(True)
        self.engine.wait_finished()
        if self.service is not None and self.service.ident is not None:
            self.service.join()
        self.reap()


# Marks the service threads (see in_service_thread).
_this_thread = threading.local()


def in_service_thread() -> bool:
    """Whether the calling thread is a pool's or executor's service thread."""
    return getattr(_this_thread, "is_service", False)


def _service_main(
    engine: Any,
    fork_worker: Optional[Callable[[int, int, List[int]], None]],
    reap: Callable[[], None],
    serve: Callable[..., None],
    state: Any,
) -> None:
    _this_thread.is_service = True
    serve(_job_news(engine, fork_worker), state)
    reap()


def _job_news(
    engine: Any, fork_worker: Optional[Callable[[int, int, List[int]], None]]
) -> Iterator[int]:
    """The ids of jobs with news from the engine, until it has ended; the
    engine's log lines are forwarded and its fork requests served on the way."""
    while True:
        events = engine.service_next()
        if events is None:
            return
        jobs, forks = events
        fork_asked(fork_worker, forks)
        yield from dict.fromkeys(jobs)


def check_limits(task_timeout: Any, max_memory_per_child: Any) -> None:
    """Validates ferropool's own keyword arguments, naming the bad one."""
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)):
            raise TypeError(
                f"task_timeout must be a number of seconds or None, not {task_timeout!r}"
            )
        if not task_timeout > 0:
            raise ValueError(f"task_timeout must be positive, not {task_timeout!r}")
    limit = max_memory_per_child
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(
                f"max_memory_per_child must be a number of bytes or None, not {limit!r}"
            )
        if limit <= 0:
            raise ValueError(f"max_memory_per_child must be positive, not {limit!r}")


def reserve_worker_numbers(count: int) -> int:
    """Worker names continue the stdlib's process counter (ForkPoolWorker-N)."""
    first = next(process._process_counter)
    for _ in range(count - 1):
        next(process._process_counter)
    return first


def _interpreter_argv(code: str) -> List[str]:
    import subprocess
    from multiprocessing import spawn

    flags = subprocess._args_from_interpreter_flags()
    return [os.fsdecode(spawn.get_executable()), *flags, "-c", code]


class EngineSpec:
    """How to start one pool's engine, read by the engine's constructor
    (src/python/engine.rs): the workers, how they are started (exactly one of
    `spawn_argv`, `zygote_fd` and `fork_workers`) and the limits. Defaults
    here, and only here."""

    def __init__(self, processes: int, **given: Any) -> None:
        self.processes = processes
        self.spawn_argv: Optional[List[str]] = None
        self.inherited_fds: List[int] = []
        self.zygote_fd: Optional[int] = None
        self.fork_workers = False
        self.first_worker_fds: List[int] = []
        self.first_worker_pids: List[int] = []
        self.prepare: Optional[bytes] = None
        self.setup: Optional[bytes] = None
        self.tasks_per_worker: Optional[int] = None
        self.prefetch = 64  # most tasks one worker holds, running and queued
        self.first_worker_number = 1
        self.boot_failure_limit = 3
        self.task_timeout: Optional[float] = None
        self.crash_limit = 10
        self.crash_window = 10.0
        for name, value in given.items():
            if not hasattr(self, name):
                raise TypeError(f"EngineSpec has no setting {name!r}")
            setattr(self, name, value)


def start_engine(
    method: str,
    processes: int,
    initializer: Optional[Callable[..., Any]],
    initargs: Any,
    tasks_per_worker: Optional[int],
    boot_failure_limit: Optional[int] = None,
    task_timeout: Optional[float] = None,
    max_memory: Optional[int] = None,
    executor: bool = False,
) -> Started:
    setup = WorkerSetup(
        initializer=initializer,
        initargs=tuple(initargs),
        start_method=method,
        name_prefix=WORKER_NAMES[method],
        parent_pid=os.getpid(),
        max_memory=max_memory,
        executor=executor,
        own_group=task_timeout is not None,
    )
    common = dict(
        task_timeout=task_timeout,
        crash_limit=max(CRASH_LIMIT_MIN, CRASH_LIMIT_PER_WORKER * processes),
        crash_window=CRASH_WINDOW,
        tasks_per_worker=tasks_per_worker,
        first_worker_number=reserve_worker_numbers(processes),
        boot_failure_limit=boot_failure_limit or max(3, processes),
    )
    if method == "spawn":
        return _start_spawn(processes, setup, common)
    if method == "forkserver":
        return _start_forkserver(processes, setup, common)
    return _start_fork(processes, setup, common)


def _start_spawn(processes: int, setup: WorkerSetup, common: dict) -> Started:
    from multiprocessing import spawn

    fds = FdCollector()
    setup_bytes = fds.dumps(setup)
    prepare = fds.dumps(spawn.get_preparation_data(setup.name_prefix))
    argv = _interpreter_argv("from ferropool._worker import spawn_main; spawn_main()")
    engine = _native.Engine(
        EngineSpec(
            processes,
            spawn_argv=argv,
            inherited_fds=fds.fds,
            prepare=prepare,
            setup=pickle.dumps((len(fds.fds), setup_bytes)),
            **common,
        )
    )
    return Started(engine, lambda: None)


def _start_forkserver(processes: int, setup: WorkerSetup, common: dict) -> Started:
    from multiprocessing import spawn

    from . import _forkserver

    fds = FdCollector()
    setup_bytes = fds.dumps(setup)
    prepare = spawn.get_preparation_data(setup.name_prefix)
    pool_prepare = {k: v for k, v in prepare.items() if k in _forkserver.PER_POOL_KEYS}
    ours, pid = _forkserver.start_zygote(
        FdCollector().dumps(prepare), FdCollector().dumps(pool_prepare), setup_bytes, fds.fds
    )
    with ours:
        engine = _native.Engine(EngineSpec(processes, zygote_fd=ours.fileno(), **common))
    # The zygote is the fork server's child (the server reaps it); the pool
    # only waits for it to be gone.
    return Started(engine, _forkserver.exit_waiter(pid))


class _Forker:
    """Forks the workers of a `fork` pool from the caller's own process, as
    the stdlib does: the first ones in `Pool()` itself when the caller is the
    main thread, every other one (replacements, and the first ones of a pool
    made in another thread) in the pool's service thread when the engine asks.
    A worker's parent-death signal fires when the thread that forked it ends:
    both threads outlive the workers. Every engine thread of the process is
    parked (holding no lock) while the process is copied."""

    def __init__(self, setup: WorkerSetup, first_from_service: int) -> None:
        self.setup = setup
        self.engine: Any = None
        self._first_left = first_from_service
        self._first_forked = threading.Event()
        if first_from_service == 0:
            self._first_forked.set()

    def fork_first(self, pairs: List[tuple[socket.socket, socket.socket]], first: int) -> List[int]:
        """Forks one worker per socket pair (worker numbers from `first`);
        returns their pids. Runs before the engine exists."""
        pids: List[int] = []
        parent = os.getpid()
        flush_std_streams()
        paused = _native.pause_engines()
        try:
            for i, (_, worker_end) in enumerate(pairs):
                pid = os.fork()
                if pid == 0:
                    # Not ours to keep: the engine's ends, later workers' ends.
                    others = [p[0].detach() for p in pairs] + [
                        p[1].detach() for p in pairs[i + 1 :]
                    ]
                    forked_worker_main(worker_end.detach(), self.setup, first + i, parent, others)
                pids.append(pid)
                worker_end.close()
        except BaseException:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        finally:
            paused.resume()
        return pids

    def fork_asked(self, number: int, sock_fd: int, not_ours: List[int]) -> None:
        """Forks worker `number` on `sock_fd` for the engine (service thread);
        the new process closes the fds in `not_ours` (see `fork_asked`)."""
        pid: Optional[int] = None
        parent = os.getpid()
        phase, broken, _ = self.engine.status()
        if broken is not None or phase not in ("RUN", "CLOSE"):
            os.close(sock_fd)  # stopping: this worker is not wanted any more
            self.engine.worker_forked(number, None)
            self._count_first()
            return
        try:
            flush_std_streams()
            paused = _native.pause_engines()
            try:
                pid = os.fork()
                if pid == 0:
                    forked_worker_main(sock_fd, self.setup, number, parent, not_ours)
            finally:
                if pid != 0:
                    paused.resume()
        except OSError as e:
            # The engine sees the worker's socket close: a worker that died
            # before it was ready, counted towards breaking the pool.
            import logging

            logging.getLogger("ferropool").error("could not fork worker %d: %s", number, e)
        finally:
            os.close(sock_fd)
            try:
                self.engine.worker_forked(number, pid)
            except Exception:
                if pid:  # the engine has ended: the worker exits at once
                    os.waitpid(pid, 0)
            self._count_first()

    def _count_first(self) -> None:
        if self._first_left > 0:
            self._first_left -= 1
            if self._first_left == 0:
                self._first_forked.set()

    def wait_first(self) -> None:
        """Returns once the first workers exist (forked by the service
        thread): fork workers are copies of the parent as `Pool()` left it."""
        self._first_forked.wait()


def fork_asked(
    fork_worker: Optional[Callable[[int, int, List[int]], None]],
    forks: List[Tuple[int, int, int]],
) -> None:
    """Service threads: forks the workers the engine asked for, given as
    (number, socket fd, fd of the engine's end). Each new process closes the
    engine's end of its socket and every socket of the requests still
    waiting: a process holding a copy of a worker's socket would keep it
    from ever looking closed."""
    engine_ends = [e for _, _, e in forks]
    for i, (number, fd, _) in enumerate(forks):
        if fork_worker is None:
            os.close(fd)  # only `fork` engines ask; the engine sees a dead worker
            continue
        later = [f for _, f, _ in forks[i + 1 :]]
        fork_worker(number, fd, engine_ends + later)


def _worker_socketpair() -> tuple[socket.socket, socket.socket]:
    """A worker's socket pair, with the engine's buffer sizes (a large
    payload crosses in a few hops)."""
    pair = socket.socketpair()
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WORKER_SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WORKER_SOCKET_BUFFER)
    return pair


def _start_fork(processes: int, setup: WorkerSetup, common: dict) -> Started:
    by_caller = threading.current_thread() is threading.main_thread()
    forker = _Forker(setup, first_from_service=0 if by_caller else processes)
    pairs = [_worker_socketpair() for _ in range(processes)] if by_caller else []
    try:
        pids = forker.fork_first(pairs, common["first_worker_number"])
        forker.engine = _native.Engine(
            EngineSpec(
                processes,
                fork_workers=True,
                first_worker_fds=[engine_end.fileno() for engine_end, _ in pairs],
                first_worker_pids=pids,
                **common,
            )
        )
    finally:
        # The engine holds its own copies; closed ends stop the workers if
        # it could not be made.
        for engine_end, worker_end in pairs:
            engine_end.close()
            worker_end.close()
    return Started(
        forker.engine, lambda: None, fork_worker=forker.fork_asked, wait_first=forker.wait_first
    )
