"""Module-level functions for the Pool tests.

They live here (not in the test files) so that spawn and forkserver workers,
which start fresh interpreters, can import them by name."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

# The parent changes this before starting a fork pool: fork workers see the
# change, spawn/forkserver workers import this module afresh and do not.
MARK = "as imported"

# Set by the initializers below, inside the workers.
_initialized = None
_lock = None
_counter = None


def square(x):
    return x * x


def add(a, b):
    return a + b


def power(base, exp=2):
    return base**exp


def identity(x):
    return x


def pid(_=None):
    return os.getpid()


def pid_after(seconds):
    """Keeps the worker busy so that the tasks of a wave spread over workers."""
    time.sleep(seconds)
    return os.getpid()


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def worker_info(_=None):
    proc = multiprocessing.current_process()
    return proc.name, os.getpid(), MARK


def fail_on(x, bad=2):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def raise_value_error(message):
    raise ValueError(message)


def raise_key_error(message):
    raise KeyError(message)


class CustomError(Exception):
    pass


def raise_custom(message):
    raise CustomError(message)


def return_lambda():
    return lambda: 1


def return_lock():
    return threading.Lock()


def numbers(n):
    """A generator: no len()."""
    yield from range(n)


def int_list(n):
    """A list of n ints (returned whole: packed, see test_packed_results)."""
    return list(range(n))


def pairs(n):
    for i in range(n):
        yield (i, i + 1)


def failing_numbers(n, fail_at):
    """Yields 0..n-1 but raises KeyError instead of yielding `fail_at`."""
    for i in range(n):
        if i == fail_at:
            raise KeyError(f"input broke at {i}")
        yield i


def init_set_global(value):
    global _initialized
    _initialized = value


def read_global(_=None):
    return _initialized


def init_lock_counter(lock, counter):
    """The stdlib's seed pattern: share a Lock and a Value through initargs."""
    global _lock, _counter
    _lock = lock
    _counter = counter


def increment(x):
    with _lock:
        _counter.value += 1
    return x


def init_fails():
    raise RuntimeError("initializer failed on purpose")


def delayed(pair):
    """imap-friendly sleep: `pair` is (seconds, value)."""
    seconds, value = pair
    time.sleep(seconds)
    return value


def return_lock_for(_x):
    return threading.Lock()


def lock_if_two(x):
    """Returns an unpicklable result for item 2 only."""
    if x == 2:
        return threading.Lock()
    return x


def divide_len_by_zero(data):
    return len(data) / 0


class ZeroCopyBlock:
    """A PEP 574 object, as numpy arrays are: with protocol 5 it pickles its
    data as a PickleBuffer and, unpickled, keeps a view of whatever buffer it
    is given (no copy)."""

    def __init__(self, data, writable=True):
        self.data = memoryview(data)
        self.writable = writable

    def __reduce_ex__(self, protocol):
        import pickle

        view = self.data if self.writable else self.data.toreadonly()
        return ZeroCopyBlock._rebuild, (pickle.PickleBuffer(view), self.writable)

    @staticmethod
    def _rebuild(buffer, writable):
        return ZeroCopyBlock(buffer, writable)

    def tobytes(self):
        return self.data.tobytes()


def block_of(size, fill, writable=True):
    """A ZeroCopyBlock of `size` bytes made in the worker."""
    return ZeroCopyBlock(bytearray([fill]) * size, writable)


def block_info(block):
    """What a worker sees of a block it was sent: (size, first, last byte)."""
    data = block.data
    return len(data), data[0], data[-1]


def platform_features():
    """What the worker uses of each Linux-only facility (see src/platform/)."""
    import ferropool._native

    return ferropool._native.platform_features()


def fork_lingering_child(seconds):
    """Forks a child that outlives the task (it holds a copy of the worker's
    socket) and returns its pid."""
    child = os.fork()
    if child == 0:
        time.sleep(seconds)
        os._exit(0)
    return child


def fork_lingering_child_then_die(seconds, pid_file):
    """As fork_lingering_child, then the worker kills itself; the child's
    pid goes to `pid_file`."""
    import signal

    child = fork_lingering_child(seconds)
    with open(pid_file, "w") as f:
        f.write(str(child))
    os.kill(os.getpid(), signal.SIGKILL)


class DropReporter:
    """A callable whose instances, unpickled in a worker as a job's function,
    write a line to `path` when the worker lets them go."""

    def __init__(self, path, ballast=0):
        self.path = path
        self.ballast = b"b" * ballast  # a large pickle, like a closure holding data
        self.made_in = os.getpid()

    def __call__(self, x):
        return x

    def __del__(self):
        if os.getpid() == self.made_in:
            return  # the caller's own instance
        with open(self.path, "a") as f:
            f.write(f"{len(self.ballast)}\n")


def dropped(path):
    """What `DropReporter`s in this worker wrote so far (a task)."""
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


class MarkedPickle:
    """A custom serializer (an object with dumps and loads): a pickle behind
    a mark that only its own loads accepts, so a task that arrives proves
    the worker used it."""

    MARK = b"marked:"

    def dumps(self, obj):
        import pickle

        return self.MARK + pickle.dumps(obj)

    def loads(self, data):
        import pickle

        data = bytes(data)
        if not data.startswith(self.MARK):
            raise ValueError("not marked: the worker did not use MarkedPickle.loads")
        return pickle.loads(data[len(self.MARK) :])


def kill_own_process(_=None):
    """Dies at once of SIGKILL (a Dask worker process killed mid-task)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_own_process_on(x, bad=3):
    if x == bad:
        kill_own_process()
    return x * x


class EndsItsWorkerWhenFreed:
    """A result whose finalizer ends the worker that made it (os._exit): the
    stdlib's worker lets go of a result only once it has sent it."""

    def __init__(self, value):
        self.value = value
        self.made_in = os.getpid()

    def __del__(self):
        if os.getpid() == self.made_in:
            os._exit(3)


def result_ending_its_worker(value):
    return EndsItsWorkerWhenFreed(value)


class DiesWhenLoaded:
    """A callable whose unpickling ends the worker that loads it (a job's
    function that cannot be loaded without a crash)."""

    def __init__(self):
        self.made_in = os.getpid()

    def __call__(self, x):
        return x

    def __setstate__(self, state):
        self.__dict__.update(state)
        if os.getpid() != self.made_in:
            os._exit(7)
