"""Module-level functions for the executor tests (importable by spawn and
forkserver workers by name)."""

from __future__ import annotations

import os
import signal
import threading
import time

_greeting = None


def set_greeting(value):
    global _greeting
    _greeting = value


def greeting(_=None):
    return _greeting


def failing_initializer():
    raise RuntimeError("initializer fails on purpose")


def cube(x):
    return x * x * x


def mul(a, b):
    return a * b


def slow_square(x, seconds=0.2):
    time.sleep(seconds)
    return x * x


def die_on(x, bad, how="exit"):
    """Ends its own worker process when given `bad`."""
    if x == bad:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    return x


def return_a_lock(_=None):
    return threading.Lock()


def pid_of_worker(_=None):
    return os.getpid()


class ReadCounter:
    """An iterable that counts how many items were taken from it."""

    def __init__(self, n):
        self.n = n
        self.taken = 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield i


def mark_then_sleep(directory, i, seconds=0.05):
    """Leaves a file named `i` in `directory` (proof that task i ran)."""
    with open(os.path.join(directory, str(i)), "w"):
        pass
    time.sleep(seconds)
    return i
