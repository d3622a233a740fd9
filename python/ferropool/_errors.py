"""Exceptions that ferropool adds to the stdlib's."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from concurrent.futures.process import BrokenProcessPool

__all__ = [
    "BrokenProcessPool",
    "RemoteTaskError",
    "TaskTimeoutError",
    "TaskTransferError",
    "WorkerLostError",
]


def _timeout_bases() -> tuple[type, ...]:
    # The builtin TimeoutError, and the two library ones where they differ
    # from it (concurrent.futures' is the builtin one from Python 3.11 on).
    bases = [multiprocessing.TimeoutError, concurrent.futures.TimeoutError, TimeoutError]
    return tuple(dict.fromkeys(bases))


class WorkerLostError(BrokenProcessPool):
    """The worker process running this task died (killed, crashed or exited).

    Only the task it was running fails; the pool replaces the worker and keeps
    going. A subclass of ``BrokenProcessPool`` so that code written for the
    stdlib executor's crash behaviour still catches it.
    """


class RemoteTaskError(Exception):
    """A task raised an exception that could not be sent to the parent
    (it could not be pickled there or unpickled here). The message keeps its
    type name and text; ``__cause__`` carries the worker's traceback."""


class TaskTransferError(RemoteTaskError, BrokenProcessPool):
    """One task's data could not cross between processes: its function or
    arguments could not be unpickled in the worker, or its result or
    exception could not be unpickled in the parent (whatever unpickling
    raised, ``SystemExit`` included). ``__cause__`` is that error; the
    message repeats it.

    Only this task fails and the pool goes on. The stdlib's executor breaks
    the whole pool in these cases, hence a ``BrokenProcessPool`` (code written
    for it still catches this); a ``RemoteTaskError`` as well, which ferropool
    raised for an outcome that could not be unpickled before."""


class TaskTimeoutError(*_timeout_bases()):  # type: ignore[misc]
    """The task ran longer than the pool's ``task_timeout``; its worker (with
    the worker's own child processes) was killed and replaced.

    A subclass of ``TimeoutError``, ``multiprocessing.TimeoutError`` and
    ``concurrent.futures.TimeoutError``."""
