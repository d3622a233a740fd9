"""Exceptions that ferropool adds to the stdlib's."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

__all__ = ["BrokenProcessPool", "RemoteTaskError", "WorkerLostError"]


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
