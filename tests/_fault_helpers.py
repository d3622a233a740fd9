"""Helpers for the fault-injection tests (test_faults*.py).

Two halves:

* functions that run inside workers (module level, so that spawn and
  forkserver workers import them by name): tasks that die in a chosen way,
  report their pid, start child processes, hog memory, raise exceptions that
  cannot travel, and initializers that fail after the first workers;
* parent-side bookkeeping: finding a pool's worker processes with psutil
  (below the forkserver zygote, or children of the parent), waiting for pid
  files, and checking that nothing is left behind.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
from _support import still_running

# ============================================================================
# Running inside workers
# ============================================================================


def write_pid(path, pid=None):
    """Writes `pid` (default: ours) to `path` atomically."""
    path = str(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid() if pid is None else pid))
    os.replace(tmp, path)


def square(x):
    return x * x


def pid_square(x):
    """(pid, x*x): which worker ran the item."""
    return os.getpid(), x * x


def nothing(_x):
    return None


def my_pid(_=None):
    return os.getpid()


def sleep_square(x, seconds=0.05):
    time.sleep(seconds)
    return x * x


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def report_then_sleep(pidfile, seconds, value=None):
    """Writes the worker's pid to `pidfile`, then sleeps: the parent kills
    or signals the worker meanwhile."""
    write_pid(pidfile)
    time.sleep(seconds)
    return value


def segfault():
    """A crash in C code: reads address 0. (faulthandler, which pytest turns
    on and fork workers inherit, would only print a traceback first.)"""
    faulthandler.disable()
    ctypes.string_at(0)


def die(how, pidfile, value=None):
    """Ends the worker process running this task, after writing its pid to
    `pidfile`. `how`: "sigkill" (waits to be SIGKILLed by the parent, as the
    OOM killer would), "self_sigkill", "segfault", "os_exit" (code 7),
    "sys_exit" (code 5)."""
    write_pid(pidfile)
    if how == "sigkill":
        time.sleep(60)
        return value
    if how == "self_sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        segfault()
    elif how == "os_exit":
        os._exit(7)
    elif how == "sys_exit":
        sys.exit(5)
    time.sleep(60)
    return value


def die_on(x, bad, pidfile, how="os_exit", delay=0.0):
    """x*x, except for `bad`: that item ends its worker (see `die`)."""
    if x == bad:
        time.sleep(delay)
        die(how, pidfile)
    return x * x


def pid_die_on(x, bad, pidfile, how="os_exit"):
    """(pid, x*x), except that `bad` ends its worker."""
    if x == bad:
        die(how, pidfile)
    return os.getpid(), x * x


def record_run_then_maybe_die(args):
    """Appends a line to `directory/run-x` (every run of item x leaves one),
    then returns x*x, or SIGKILLs its own worker when x == bad."""
    x, bad, directory = args
    with open(os.path.join(directory, f"run-{x}"), "a") as f:
        f.write(f"{os.getpid()}\n")
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def runs_of(directory, x):
    try:
        with open(os.path.join(directory, f"run-{x}")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def exit_worker(x):
    """Every call ends its worker: a task that always crashes."""
    os._exit(9)


def soak_task(i):
    """A short task of varying length (0-9 ms) returning a checkable value."""
    time.sleep((i * 7 % 10) / 1000)
    return i, i * i


def spawn_child_then_sleep(pidfile, seconds):
    """Starts a child process of the worker (its pid goes to `pidfile`),
    then runs past any sensible time limit."""
    child = subprocess.Popen(["sleep", "120"])
    write_pid(pidfile, child.pid)
    time.sleep(seconds)
    return "finished"


def ignore_sigterm_then_sleep(pidfile, seconds):
    """A task that ignores SIGTERM (a stuck or stubborn worker)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pid(pidfile)
    time.sleep(seconds)
    return "finished"


_hoard = []


def hog_memory(nbytes):
    """Grows the worker's resident memory by `nbytes` for good (the pages
    are written, so they are resident); returns the worker's pid."""
    _hoard.append(b"\x01" * nbytes)
    return os.getpid()


def rss_of_worker(_=None):
    return os.getpid(), psutil.Process().memory_info().rss


# ----- things that cannot travel -------------------------------------------


class Unsendable:
    """Cannot be pickled, and its pickling error does not say what it is:
    a message that names it must come from ferropool."""

    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f"Unsendable({self.tag!r})"

    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


def touch(path):
    """Leaves a trace that the task ran."""
    Path(path).touch()
    return str(path)


def touch_pair(path, _other):
    return touch(path)


def touch_second(_other, path):
    return touch(path)


class HoldsLock(Exception):
    """An exception that cannot be pickled in the worker (a lock attribute)."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class NeedsTwoArgs(Exception):
    """Pickles fine, but cannot be unpickled: args has one item, __init__
    needs two (the classic case that hangs multiprocessing.Pool)."""

    def __init__(self, first, second):
        super().__init__(f"{first} / {second}")


def raise_holds_lock(message):
    raise HoldsLock(message)


def raise_needs_two_args(first, second):
    raise NeedsTwoArgs(first, second)


WORKER_ONLY_MODULE = "ferropool_tests_worker_only"


def _worker_only_module():
    """A module that exists only in the worker: the parent cannot unpickle
    what refers to it."""
    mod = sys.modules.get(WORKER_ONLY_MODULE)
    if mod is None:
        mod = types.ModuleType(WORKER_ONLY_MODULE)

        class WorkerOnlyError(Exception):
            pass

        class WorkerOnlyValue:
            pass

        for cls in (WorkerOnlyError, WorkerOnlyValue):
            cls.__module__ = WORKER_ONLY_MODULE
            cls.__qualname__ = cls.__name__
            setattr(mod, cls.__name__, cls)
        sys.modules[WORKER_ONLY_MODULE] = mod
    return mod


def raise_worker_only(message):
    raise _worker_only_module().WorkerOnlyError(message)


def return_worker_only(_=None):
    return _worker_only_module().WorkerOnlyValue()


def fail_one(x, bad, kind):
    """x*x, except that `bad` raises an exception of `kind` that cannot
    reach the parent the ordinary way."""
    if x == bad:
        if kind == "unpicklable":
            raise_holds_lock(f"holds a lock at {x}")
        if kind == "not_unpicklable":
            raise_needs_two_args(f"needs two at {x}", "second")
        raise_worker_only(f"worker-only at {x}")
    return x * x


# ----- initializers ----------------------------------------------------------


def _take_ticket(directory):
    """The number of workers that ran this initializer before this one
    (across processes: exclusive creation of numbered files)."""
    n = 0
    while True:
        try:
            fd = os.open(os.path.join(directory, f"start-{n}"), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return n


def init_healthy_first(directory, healthy):
    """The first `healthy` workers start fine; every later one dies in its
    initializer (os._exit, as a crashing C extension would)."""
    if _take_ticket(directory) >= healthy:
        os._exit(3)


def init_count_then_fail(directory):
    """Counts the start, then fails like a broken initializer."""
    _take_ticket(directory)
    raise RuntimeError("initializer failed on purpose")


def starts_recorded(directory):
    return len([n for n in os.listdir(directory) if n.startswith("start-")])


# ----- lazy input ------------------------------------------------------------


class CountingRange:
    """An iterable of 0..n-1 without a length that counts how far it was read
    (a generator inside, so it cannot be sized or indexed)."""

    def __init__(self, n):
        self.n = n
        self.taken = 0

    def __iter__(self):
        return self._gen()

    def _gen(self):
        for i in range(self.n):
            self.taken += 1
            yield i


# ============================================================================
# Parent-side bookkeeping
# ============================================================================

# Process-wide helpers of the stdlib that outlive any one pool.
SHARED_HELPERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "ferropool._forkserver",
)


def own_processes():
    """Pids of this process's descendants, less the stdlib's shared helpers
    (ferropool's fork server counts: it must go when this process goes)."""
    pids = []
    for p in psutil.Process().children(recursive=True):
        cmd = _cmdline(p)
        if cmd is not None and not any(
            name in cmd for name in SHARED_HELPERS if name.startswith("multiprocessing")
        ):
            pids.append(p.pid)
    return pids


def _cmdline(proc):
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return None


def pool_workers(root=None):
    """The running worker processes of the pools below `root` (default: this
    process): spawned and fork workers are its children; forkserver workers
    are the children of a zygote that is a child of ferropool's fork server.
    A worker's own children (started by a task) are not workers."""
    try:
        children = psutil.Process(root).children()
    except psutil.NoSuchProcess:
        return []
    zygotes = []
    workers = []
    for child in children:
        cmd = _cmdline(child)
        if cmd is None:
            continue
        if "ferropool._forkserver" in cmd:  # the fork server: its children are zygotes
            try:
                zygotes.extend(child.children())
            except psutil.Error:
                pass
        elif any(name in cmd for name in SHARED_HELPERS):
            continue
        else:
            workers.append(child)
    for zygote in zygotes:
        try:
            workers.extend(zygote.children())
        except psutil.Error:
            pass
    return still_running(workers)


def _parent_pid(proc):
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def worker_pids(root=None):
    return sorted(p.pid for p in pool_workers(root))


def wait_for_workers(count, timeout=15.0, min_age=0.0):
    """Waits until `count` workers run (and are at least `min_age` seconds
    old); returns them."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        workers = [p for p in pool_workers() if now - _created(p) >= min_age]
        if len(workers) >= count or time.monotonic() > deadline:
            return workers
        time.sleep(0.02)


def _created(proc):
    try:
        return proc.create_time()
    except psutil.Error:
        return time.time()


def wait_ready(pool, count=2, timeout=30.0):
    """Waits until `count` workers of `pool` run tasks (ready, not merely
    started), with 0.1 s tasks, which also makes the pool stop handing
    workers work ahead (it does so only while tasks are very short)."""
    deadline = time.monotonic() + timeout
    seen = set()
    while len(seen) < count and time.monotonic() < deadline:
        seen |= set(pool.map(sleep_pid, [0.1] * (2 * count), chunksize=1))
    return seen


def sleep_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def read_pid(path, timeout=15.0):
    """Waits for a pid file written by `write_pid` and returns the pid."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no pid file {path} after {timeout} s")
        time.sleep(0.01)
    return int(path.read_text())


def alive(pid):
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_pid_gone(pid, timeout=5.0):
    """Seconds until `pid` stopped running; None if it still runs after
    `timeout`."""
    start = time.monotonic()
    while alive(pid):
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.01)
    return time.monotonic() - start


def outcome_of(get, *args, **kwargs):
    """Calls `get(*args, **kwargs)`; returns its value or the exception it
    raised."""
    try:
        return get(*args, **kwargs)
    except Exception as e:
        return e


def drain(it):
    """Iterates `it` to the end; exceptions are recorded in place."""
    out = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out
        except Exception as e:
            out.append(e)


def drain_until_error(it, timeout):
    """Iterates an imap iterator until it raises; returns the exception
    (multiprocessing.TimeoutError if a result takes over `timeout`)."""
    while True:
        try:
            it.next(timeout=timeout)
        except StopIteration:
            return None
        except Exception as e:
            return e


class ProcessTracker:
    """Remembers every process that appeared below this one since it was
    made (and pids added by hand: a worker's own children, which leave the
    tree when their parent dies), and checks that none is left running and
    that no child of ours is an unreaped zombie."""

    def __init__(self):
        self.me = psutil.Process()
        self.baseline = {p.pid for p in self.me.children(recursive=True)}
        self.seen = {}

    def observe(self):
        for p in self.me.children(recursive=True):
            if p.pid not in self.baseline and p.pid not in self.seen:
                cmd = _cmdline(p)
                if cmd is not None and any(name in cmd for name in SHARED_HELPERS):
                    # Only the helper itself (a child of ours): what ferropool's
                    # fork server forks (zygotes, workers) is tracked.
                    if _parent_pid(p) == self.me.pid:
                        self.baseline.add(p.pid)
                        continue
                self.seen[p.pid] = p
        return list(self.seen.values())

    def add(self, pid):
        try:
            self.seen.setdefault(pid, psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass

    def leftovers(self, timeout=5.0):
        """Processes still running after up to `timeout` seconds, plus
        zombie children of ours (nobody reaped them)."""
        self.observe()
        deadline = time.monotonic() + timeout
        running = still_running(self.seen.values())
        while running and time.monotonic() < deadline:
            time.sleep(0.02)
            running = still_running(running)
        zombies = []
        for p in self.me.children():
            if p.pid in self.baseline:
                continue
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    zombies.append(p)
            except psutil.NoSuchProcess:
                pass
        return running + zombies

    def assert_clean(self, timeout=5.0):
        left = self.leftovers(timeout)
        assert left == [], f"processes left behind: {[(p.pid, _cmdline(p)) for p in left]}"


# ----- stopping pools without ever hanging the test session -----------------


def _forget(runner):
    """Drops a pool that could not be stopped from ferropool's registry of
    live pools, so that the interpreter's exit does not hang on it too."""
    from ferropool._lifecycle import executors_at_exit, pools_at_exit

    pools_at_exit.discard(runner)
    core = getattr(runner, "_core", None)
    if core is not None:
        executors_at_exit.discard(core)


def stop_guarded(runner, timeout=10.0):
    """Stops a Pool (terminate) or an executor (shutdown, cancelling what
    waits) in a helper thread: a stop that hangs fails the test instead of
    hanging the session (pytest-timeout fires only once per test)."""
    if hasattr(runner, "terminate"):
        stop = runner.terminate
    else:

        def stop():
            runner.shutdown(wait=True, cancel_futures=True)

    errors = []

    def run():
        try:
            stop()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name="test-stop-guard", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        _forget(runner)
        raise AssertionError(f"{type(runner).__name__} did not stop within {timeout} s: a hang")
    if errors:
        raise errors[0]


class guarded:
    """`with guarded(pool) as pool:` stops the pool at the end as `with
    pool:` would (Pool: terminate; executor: shutdown), guarded against a
    hang by `stop_guarded`."""

    def __init__(self, runner, timeout=10.0):
        self.runner = runner
        self.timeout = timeout

    def __enter__(self):
        return self.runner

    def __exit__(self, *exc):
        stop_guarded(self.runner, self.timeout)
        return False
