"""Start methods: turning (start method, setup) into a running engine.

The stdlib's rules decide the method: an explicit context, else the
process-wide default (``multiprocessing.set_start_method``). Then:

* ``fork``: fork a zygote from the caller now, before this pool's engine
  thread exists; the zygote forks every worker, so workers are copies of the
  parent as it was when the pool was made (as with the stdlib).
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
import socket
import subprocess
from dataclasses import dataclass
from multiprocessing import context as mp_context
from multiprocessing import process, spawn, util
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, List, Optional

from . import _forkserver, _native
from ._worker import InheritedFd, WorkerSetup, zygote_loop

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


@dataclass
class Started:
    engine: Any
    # Waits for helper processes (the zygote) after the engine finished.
    reap: Callable[[], None]


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
    flags = subprocess._args_from_interpreter_flags()
    return [os.fsdecode(spawn.get_executable()), *flags, "-c", code]


def start_engine(
    method: str,
    processes: int,
    initializer: Optional[Callable[..., Any]],
    initargs: Any,
    tasks_per_worker: Optional[int],
    boot_failure_limit: Optional[int] = None,
    task_timeout: Optional[float] = None,
    max_memory: Optional[int] = None,
) -> Started:
    setup = WorkerSetup(
        initializer=initializer,
        initargs=tuple(initargs),
        start_method=method,
        name_prefix=WORKER_NAMES[method],
        parent_pid=os.getpid(),
        max_memory=max_memory,
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
    fds = FdCollector()
    setup_bytes = fds.dumps(setup)
    prepare = fds.dumps(spawn.get_preparation_data(setup.name_prefix))
    argv = _interpreter_argv("from ferropool._worker import spawn_main; spawn_main()")
    engine = _native.Engine(
        processes,
        spawn_argv=argv,
        inherited_fds=fds.fds,
        prepare=prepare,
        setup=pickle.dumps((len(fds.fds), setup_bytes)),
        **common,
    )
    return Started(engine, lambda: None)


def _start_forkserver(processes: int, setup: WorkerSetup, common: dict) -> Started:
    fds = FdCollector()
    setup_bytes = fds.dumps(setup)
    prepare = spawn.get_preparation_data(setup.name_prefix)
    pool_prepare = {k: v for k, v in prepare.items() if k in _forkserver.PER_POOL_KEYS}
    ours, pid = _forkserver.start_zygote(
        FdCollector().dumps(prepare), FdCollector().dumps(pool_prepare), setup_bytes, fds.fds
    )
    with ours:
        engine = _native.Engine(processes, zygote_fd=ours.fileno(), **common)
    # The zygote is the fork server's child (the server reaps it); the pool
    # only waits for it to be gone.
    return Started(engine, _forkserver.exit_waiter(pid))


def _start_fork(processes: int, setup: WorkerSetup, common: dict) -> Started:
    ours, theirs = socket.socketpair()
    util._flush_std_streams()
    # Other pools' engine threads are parked (holding no lock) while the
    # process is copied: no process is forked while an engine thread runs.
    paused = _native.pause_engines()
    try:
        pid = os.fork()
    except BaseException:
        paused.resume()
        raise
    if pid != 0:
        paused.resume()
    if pid == 0:  # the zygote
        try:
            ours.close()
            zygote_loop(theirs, setup, forked_from_parent=True)
        finally:
            os._exit(1)
    theirs.close()
    with ours:
        try:
            engine = _native.Engine(processes, zygote_fd=ours.fileno(), **common)
        except BaseException:
            ours.close()
            os.waitpid(pid, 0)
            raise

    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    return Started(engine, reap)
