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
import sys
import threading
from multiprocessing import context as mp_context
from multiprocessing import process
from multiprocessing.reduction import ForkingPickler

from . import _native
from ._lifecycle import Running
from ._worker import InheritedFd, WorkerSetup, flush_std_streams, forked_worker_main

# Imported where needed, not here: a short `fork` script would pay for
# `typing`, `logging`, `subprocess` and `multiprocessing.spawn` at start-up
# (the stdlib's own fork pool imports none of them either).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

# A crash loop: this many unexpected worker deaths (per worker of the pool,
# at least CRASH_LIMIT_MIN) within CRASH_WINDOW seconds break the pool.
CRASH_LIMIT_PER_WORKER = 5
CRASH_LIMIT_MIN = 10
CRASH_WINDOW = 10.0

WORKER_NAMES = {
    "fork": "ForkPoolWorker",
    "spawn": "SpawnPoolWorker",
    "forkserver": "ForkServerPoolWorker",
}


def start_method_of(ctx: Any) -> str:
    """The start method a (stdlib or ferropool) context stands for."""
    if ctx is None:
        ctx = mp_context._default_context
    method: str = ctx.get_start_method()
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


def reserve_worker_numbers(count: int) -> int:
    """Worker names continue the stdlib's process counter (ForkPoolWorker-N)."""
    first: int = next(process._process_counter)
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
    serializer: Any = None,
) -> Running:
    """Starts the engine of a pool or executor of `processes` workers
    (`serializer`: the custom one's part for the workers, or None)."""
    setup = WorkerSetup(
        initializer=initializer,
        initargs=tuple(initargs),
        start_method=method,
        name_prefix=WORKER_NAMES[method],
        parent_pid=os.getpid(),
        max_memory=max_memory,
        executor=executor,
        own_group=task_timeout is not None,
        patched=_patched(),
        serializer=serializer,
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


def _patched() -> bool:
    # Not imported: never patched (and a short script does not pay for it).
    patching = sys.modules.get(f"{__package__}._patching")
    return patching is not None and patching.is_patched()


def _start_spawn(processes: int, setup: WorkerSetup, common: dict[str, Any]) -> Running:
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
    return Running(engine, _nothing, _refuse_forks)


def _start_forkserver(processes: int, setup: WorkerSetup, common: dict[str, Any]) -> Running:
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
    return Running(engine, _forkserver.exit_waiter(pid), _refuse_forks)


class _Forker:
    """Forks the workers of a `fork` pool from the caller's own process, as
    the stdlib does: the first ones in `Pool()` itself when the caller is the
    main thread, every other one (replacements, and the first ones of a pool
    made in another thread) in the pool's service thread when the engine asks.
    A worker's parent-death signal fires when the thread that forked it ends:
    both threads outlive the workers (the fallback, a lifeline pipe, follows
    the process: see src/platform/parent_death.rs). Every engine thread of
    the process is parked (holding no lock) while the process is copied."""

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
        lifeline = _native.lifeline_for_children()
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
                    forked_worker_main(
                        worker_end.detach(), self.setup, first + i, parent, others, lifeline
                    )
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

    def serve_forks(self, forks: List[Tuple[int, int, int]]) -> None:
        """Service thread: forks the workers the engine asked for, given as
        (number, socket fd, fd of the engine's end). Each new process closes
        the engine's end of its socket and every socket of the requests
        still waiting: a process holding a copy of a worker's socket would
        keep it from ever looking closed."""
        engine_ends = [e for _, _, e in forks]
        for i, (number, fd, _) in enumerate(forks):
            later = [f for _, f, _ in forks[i + 1 :]]
            self._fork_asked(number, fd, engine_ends + later)

    def _fork_asked(self, number: int, sock_fd: int, not_ours: List[int]) -> None:
        """Forks worker `number` on `sock_fd`; the new process closes the
        fds in `not_ours`."""
        pid: Optional[int] = None
        parent = os.getpid()
        phase, broken, _ = self.engine.status()
        if broken is not None or phase not in ("RUN", "CLOSE"):
            os.close(sock_fd)  # stopping: this worker is not wanted any more
            self.engine.worker_forked(number, None)
            self._count_first()
            return
        try:
            lifeline = _native.lifeline_for_children()
            flush_std_streams()
            paused = _native.pause_engines()
            try:
                pid = os.fork()
                if pid == 0:
                    forked_worker_main(sock_fd, self.setup, number, parent, not_ours, lifeline)
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


def _nothing() -> None:
    pass


def _refuse_forks(forks: List[Tuple[int, int, int]]) -> None:
    """Only `fork` engines ask for forks: closing the socket makes the
    engine see a worker that died before it was ready."""
    for _, fd, _ in forks:
        os.close(fd)


def _worker_socketpair() -> tuple[socket.socket, socket.socket]:
    """A worker's socket pair, with the engine's buffer sizes (a large
    payload crosses in a few hops)."""
    pair = socket.socketpair()
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _native.SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _native.SOCKET_BUFFER)
    return pair


def _start_fork(processes: int, setup: WorkerSetup, common: dict[str, Any]) -> Running:
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
    return Running(forker.engine, _nothing, forker.serve_forks, forker.wait_first)
