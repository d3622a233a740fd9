"""Code that runs inside worker processes (and inside the forkserver zygote that forks
them). The task loop itself is Rust (`_native.WorkerChannel.serve`); this
module prepares the process the way the stdlib prepares a pool worker, then
supplies the three small Python pieces the loop calls: load a function, run a
task, report a function that failed to load.

    spawn:      spawn_main()      <- fresh interpreter, frames Prepare + Setup
    forkserver: _forkserver.serve() <- one per parent; forks a zygote per pool
                zygote_loop ──fork──▶ forked_worker_main() ──▶ run_worker()
    fork:       the caller ──fork──▶ forked_worker_main() ──▶ run_worker()
"""

from __future__ import annotations

import itertools
import os
import pickle
import select
import signal
import socket
import struct
import sys
from multiprocessing import context as mp_context
from multiprocessing import process

from . import _native, _pickling
from ._native import (
    APPLY,
    ENCODING_ERROR,
    KIND_PREPARE,
    KIND_SETUP,
    MAP,
    OK,
    OK_OUT_OF_BAND,
    OK_PACKED,
    RAISED,
    RAISED_UNPICKLABLE,
    SPAWN_FIRST_INHERITED_FD,
    SPAWN_SOCKET_FD,
)

# `typing` only for the type checker: workers import this module at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn, Optional, Sequence

ZYGOTE_RECORD = struct.Struct("<QQQ")

# fds this process inherited for the pool's setup (see _launch.FdCollector).
_inherited_fds: list[int] = []


class WorkerSetup:
    """What every worker of one pool needs before its first task. (A plain
    class: workers import this module at start-up, and `dataclasses` alone
    would add milliseconds to that.)"""

    def __init__(
        self,
        initializer: Optional[Callable[..., Any]],
        initargs: Sequence[Any],
        start_method: str,
        name_prefix: str,
        parent_pid: int,
        max_memory: Optional[int] = None,
        executor: bool = False,
        own_group: bool = False,
        patched: bool = False,
        serializer: Any = None,
    ) -> None:
        self.initializer = initializer
        self.initargs = initargs
        self.start_method = start_method
        self.name_prefix = name_prefix
        self.parent_pid = parent_pid
        self.max_memory = max_memory
        # A ProcessPoolExecutor's worker: tasks run as the stdlib executor's
        # do (see run_executor_task), and a failing initializer is logged.
        self.executor = executor
        # Lead a process group of its own: only with a task timeout, which
        # then kills the group (a task's children too); a group leader
        # cannot start a session (`os.setsid()` in a task).
        self.own_group = own_group
        # The parent ran ferropool.patch(): so does the worker, before the
        # initializer (a task's own pools are ferropool's too).
        self.patched = patched
        # A custom serializer's `loads` (see _serializers); None: pickle.
        self.serializer = serializer


class InheritedFd:
    """Stands in for a file descriptor inside a pickled setup: the parent
    records the fd; the worker finds it among the fds it inherited."""

    def __init__(self, index: int):
        self.index = index

    def detach(self) -> int:
        return _inherited_fds[self.index]


# ----- running tasks (called from the Rust loop) ---------------------------

# As the stdlib's workers: results pickle with multiprocessing's reducers.
_dumps = _pickling.dumps
_loads = pickle.loads


def _describe(exc: BaseException) -> str:
    """Type, message and traceback as text: what reaches the caller when the
    exception itself cannot travel."""
    try:
        message = str(exc)
    except Exception:
        message = "<message unavailable>"
    head = f"{type(exc).__module__}.{type(exc).__qualname__}: {message}"
    import traceback  # only when a task fails: start-up time

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{head}\n{text}"


# Where a task failed, sent with its exception: the parent wraps the first
# two in a TaskTransferError (see _decoding.decode).
IN_CALL, IN_ARGUMENTS, IN_FUNCTION = 0, 1, 2


def _dump_exception(exc: BaseException, stage: int = IN_CALL) -> tuple[Any, ...]:
    """(RAISED, pickled (pickled exception, text, stage)) or, when the
    exception cannot be pickled, (RAISED_UNPICKLABLE, text). The text lets
    the parent report an exception it cannot unpickle (a class only the
    worker has, an __init__ that unpickling cannot call)."""
    # Imported here, not at start-up: multiprocessing.pool and what it
    # imports would add milliseconds to every spawned worker's start.
    from multiprocessing.pool import ExceptionWithTraceback

    text = _describe(exc)
    try:
        inner = _dumps(ExceptionWithTraceback(exc, exc.__traceback__))
    except Exception:
        return RAISED_UNPICKLABLE, text.encode("utf-8", "replace")
    return RAISED, _dumps((inner, text, stage))


def _call(mode: int, func: Callable[..., Any], args: Any) -> Any:
    if mode == APPLY:
        return func(*args[0], **args[1])
    if mode == MAP:
        return list(map(func, args))
    return list(itertools.starmap(func, args))


# A list result this long or longer is packed when it holds only ints or
# only floats (see src/python/packed.rs): a map's chunk of numbers costs
# the parent, which unpacks every chunk of a map, far less than a pickle.
PACK_MIN_ITEMS = 16


def _dump_value(result: Any) -> tuple[Any, ...]:
    if type(result) is list and len(result) >= PACK_MIN_ITEMS:
        packed = _native.pack_numbers(result)
        if packed is not None:
            return OK_PACKED, packed
    out_of_band, data = _pickling.dumps_result(result)
    return (OK_OUT_OF_BAND if out_of_band else OK), data


def _task_runner(
    executor: bool, loads: Callable[[Any], Any] = pickle.loads
) -> Callable[[int, Callable[..., Any], bytes], tuple[Any, ...]]:
    """The function the Rust loop calls to run one task: (mode, function,
    pickled arguments) -> (status, pickled bytes), followed, when the task
    returned, by its arguments and result.

    A Pool's (`executor` False): exceptions that end a process (SystemExit,
    KeyboardInterrupt) raised by the task are not caught: the worker exits
    and the engine reports the task as lost, as for any other death; a result
    that cannot be pickled gives the stdlib's MaybeEncodingError.

    A ProcessPoolExecutor's, as the stdlib executor's worker runs tasks: any
    BaseException (`sys.exit()` in the task, or while its result is pickled)
    fails the task with that exception and the worker carries on; a result
    that cannot be pickled fails with the pickling error itself.

    Either way, arguments that cannot be unpickled fail the task (the parent
    makes it a TaskTransferError) and the worker carries on."""
    caught = BaseException if executor else Exception

    def run(mode: int, func: Callable[..., Any], payload: bytes) -> tuple[Any, ...]:
        try:
            args = loads(payload)
        except BaseException as e:
            return _dump_exception(e, IN_ARGUMENTS)
        try:
            result = _call(mode, func, args)
        except caught as e:
            return _dump_exception(e)
        try:
            status, data = _dump_value(result)
        except caught as e:
            return _dump_exception(e) if executor else _encoding_error(e, result)
        # The worker's loop lets go of the arguments and the result once the
        # result is sent (see WorkerChannel.send_outcome): freeing a chunk's
        # list of results must not hold up its delivery.
        return status, data, args, result

    return run


def _encoding_error(error: BaseException, result: Any) -> tuple[Any, ...]:
    from multiprocessing.pool import MaybeEncodingError  # see _dump_exception

    try:
        return ENCODING_ERROR, _dumps(MaybeEncodingError(error, result))
    except Exception:
        return _dump_exception(error)


run_task = _task_runner(executor=False)
run_executor_task = _task_runner(executor=True)


def load_failed(exc: BaseException) -> tuple[Any, ...]:
    return _dump_exception(exc, IN_FUNCTION)


# ----- becoming a pool worker ----------------------------------------------


def _become_worker(setup: WorkerSetup, number: int, forked: bool) -> None:
    """What the stdlib's Process._bootstrap does for a pool worker."""
    me = process.BaseProcess.__new__(process.BaseProcess)
    me._identity = (number,)
    me._config = process.current_process()._config.copy()
    me._parent_pid = setup.parent_pid
    me._parent_name = "MainProcess"
    me._popen = None
    me._closed = False
    me._target = None
    me._args = ()
    me._kwargs = {}
    me._name = f"{setup.name_prefix}-{number}"
    me._config["daemon"] = True
    process._current_process = me
    process._children = set()
    process._process_counter = itertools.count(1)
    if forked:
        mp_context._force_start_method(setup.start_method)
        _reset_inherited_finalizers()
    try:
        if sys.stdin is not None:
            sys.stdin.close()
            sys.stdin = open(os.devnull)
    except (OSError, ValueError):
        pass
    # Ctrl-C in a terminal reaches the whole process group; the parent
    # handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_worker(channel: Any, setup: WorkerSetup, number: int, forked: bool) -> int:
    """Initialises the worker, serves tasks, returns the exit code. Whatever
    happens, the process's finalizers run before it exits, as the stdlib's
    `Process._bootstrap` runs them (a queue's feeder thread flushes there)."""
    _become_worker(setup, number, forked)
    try:
        if not _initialize(setup):
            return 1
        run = run_executor_task if setup.executor else run_task
        loads: Callable[[Any], Any] = _loads
        if setup.serializer is not None:
            from ._serializers import loads_in_worker

            loads = loads_in_worker(setup.serializer)
            run = _task_runner(setup.executor, loads)
        channel.send_ready(os.getpid())
        channel.serve(loads, run, load_failed, setup.max_memory)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        util = _mp_util_if_loaded()
        if util is not None:
            util._exit_function()
    return 0


def _initialize(setup: WorkerSetup) -> bool:
    """Runs the pool's initializer; False (reported) if it raised."""
    try:
        if setup.patched:
            from ._patching import patch

            patch()
        if setup.initializer is not None:
            setup.initializer(*setup.initargs)
        return True
    except BaseException:
        if setup.executor:
            # As the stdlib executor's workers: through its logger, where a
            # test or an application may have put a handler.
            import logging

            logging.getLogger("concurrent.futures").critical(
                "Exception in initializer:", exc_info=True
            )
        else:
            import traceback

            sys.stderr.write(f"Process {process.current_process().name}:\n")
            traceback.print_exc()
        return False


def _mp_util_if_loaded() -> Any:
    """`multiprocessing.util` where something imported it, else None: only
    then can finalizers or after-fork hooks have been registered. ferropool
    itself does not import it, to keep it out of start-up."""
    return sys.modules.get("multiprocessing.util")


def _reset_inherited_finalizers() -> None:
    """After a fork: drop the parent's finalizers and run the after-fork
    hooks, as a forked stdlib process does (see _mp_util_if_loaded)."""
    util = _mp_util_if_loaded()
    if util is not None:
        util._finalizer_registry.clear()
        util._run_after_forkers()


def flush_std_streams() -> None:
    """Flushes stdout and stderr before the process exits or forks, so no
    buffered line is lost or written twice."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


def _finish(code: int) -> NoReturn:
    flush_std_streams()
    os._exit(code)


# ----- spawn ---------------------------------------------------------------


def spawn_main() -> None:
    """Entry point of a spawned worker: socket on fd 3, setup fds from fd 4."""
    from multiprocessing import spawn

    # The parent-death fallback: the engine kept our lifeline open across
    # exec (else the kernel's parent-death signal was set before exec).
    lifeline = os.environ.pop(_native.LIFELINE_ENV, None)
    if lifeline is not None:
        _native.die_with_parent(int(lifeline))
    channel = _native.WorkerChannel(SPAWN_SOCKET_FD)
    kind, _, _, number, payload = channel.recv()
    if kind != KIND_PREPARE:
        sys.exit(f"ferropool worker: expected preparation data, got frame kind {kind}")
    process.current_process()._inheriting = True
    try:
        spawn.prepare(pickle.loads(payload))
        kind, _, _, _, payload = channel.recv()
        if kind != KIND_SETUP:
            sys.exit(f"ferropool worker: expected setup, got frame kind {kind}")
        count, setup_bytes = pickle.loads(payload)
        _inherited_fds[:] = range(SPAWN_FIRST_INHERITED_FD, SPAWN_FIRST_INHERITED_FD + count)
        setup = pickle.loads(setup_bytes)
    finally:
        process.current_process()._inheriting = False
    code = run_worker(channel, setup, number, forked=False)
    flush_std_streams()
    sys.exit(code)


# ----- forked workers and the forkserver zygote ----------------------------


def drain(sock: socket.socket) -> None:
    """Empties a non-blocking signal wake-up socket."""
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def forked_worker_main(
    sock_fd: int,
    setup: WorkerSetup,
    number: int,
    parent_pid: int,
    close_fds: Sequence[int],
    lifeline: Optional[int],
) -> NoReturn:
    """Runs in a worker just forked (from the zygote, or from the caller
    for a pool's first workers): closes the parent's descriptors it does not
    need, then serves tasks on `sock_fd`. Never returns. `lifeline`: what
    `_native.lifeline_for_children()` gave the parent before the fork."""
    code = 1
    try:
        # First: Ctrl-C to the process group is the parent's to handle.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass  # closed in the parent meanwhile
        _native.die_with_parent(lifeline)
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent died before that took effect
        if setup.own_group:
            os.setpgid(0, 0)
        channel = _native.WorkerChannel(sock_fd)
        code = run_worker(channel, setup, number, forked=True)
    finally:
        _finish(code)


def zygote_loop(ctl: socket.socket, setup: WorkerSetup, forked_from_parent: bool) -> None:
    """Forks a worker for every request on `ctl` and reports starts and
    exits. Never returns: the process exits when the pool closes `ctl`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if forked_from_parent:
        _reset_inherited_finalizers()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[Any] = set()
    my_pid = os.getpid()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            ctl.sendall(ZYGOTE_RECORD.pack(2, pid, status & 0xFFFFFFFF))

    def fork_worker(number: int, sock_fd: int) -> None:
        lifeline = _native.lifeline_for_children()
        pid = os.fork()
        if pid == 0:
            extra = [ctl.detach(), wake_r.detach(), wake_w.detach()]
            forked_worker_main(sock_fd, setup, number, my_pid, extra, lifeline)
        os.close(sock_fd)
        children.add(pid)
        ctl.sendall(ZYGOTE_RECORD.pack(1, number, pid))

    try:
        while True:
            try:
                readable, _, _ = select.select([ctl, wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in readable:
                drain(wake_r)
                reap()
            if ctl not in readable:
                continue
            msg, fds, _, _ = socket.recv_fds(ctl, ZYGOTE_RECORD.size, 4)
            if len(msg) < ZYGOTE_RECORD.size or not fds:
                break  # the pool closed its end: shut down
            _, number, _ = ZYGOTE_RECORD.unpack(msg)
            fork_worker(number, fds[0])
    except OSError:
        pass  # the pool went away
    finally:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        _finish(0)
