"""Module-level functions and classes for test_executor_fidelity (importable
by spawn and forkserver workers by name). Each odd object misbehaves at one
step of a task's trip, as CPython's own executor tests make them."""

from __future__ import annotations

import os
import pickle
import sys
import time


def crash(delay=None):
    """Dies of SIGSEGV (after `delay` seconds)."""
    if delay:
        time.sleep(delay)
    import faulthandler

    faulthandler.disable()
    faulthandler._sigsegv()


def exit_with(code):
    sys.exit(code)


def pid_of_worker(_=None):
    return os.getpid()


def return_instance(cls):
    return cls()


def _exit_now():
    sys.exit(3)


def _raise_unpickling_error():
    raise pickle.UnpicklingError("refused to unpickle on purpose")


class ExitAtUnpickle:
    """Unpickling it calls sys.exit(3)."""

    def __reduce__(self):
        return _exit_now, ()


class ExitAtPickle:
    """Pickling it calls sys.exit(3)."""

    def __reduce__(self):
        _exit_now()


class ErrorAtPickle:
    def __reduce__(self):
        raise pickle.PicklingError("refused to pickle on purpose")


class ErrorAtUnpickle:
    """Unpickling it raises UnpicklingError."""

    def __reduce__(self):
        return _raise_unpickling_error, ()


class RaisesExitAtUnpickle(Exception):
    """An exception whose unpickling in the parent calls sys.exit(3)."""

    def __reduce__(self):
        return _exit_now, ()


def raise_exit_at_unpickle(_=None):
    raise RaisesExitAtUnpickle("raised on purpose")


def identity(x):
    return x


class Holder:
    """An object whose bound method is submitted: it must be freed once the
    call is done."""

    def method(self):
        return 42


def make_payload(_):
    return Holder()
