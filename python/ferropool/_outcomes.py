"""Turning a task's (status, payload) from the engine into a value or an
exception. The statuses mirror ``protocol::ResultStatus`` in the Rust engine;
this is the one place where they become Python exceptions."""

from __future__ import annotations

import pickle
from concurrent.futures import CancelledError
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback
from typing import Any, Tuple

from ._errors import BrokenProcessPool, RemoteTaskError, TaskTimeoutError, WorkerLostError
from ._pickling import loads_out_of_band
from ._status import (  # noqa: F401  (re-exported: the parent's code imports them from here)
    CANCELLED,
    ENCODING_ERROR,
    LOCAL_ERROR,
    OK,
    OK_OUT_OF_BAND,
    POOL_BROKEN,
    RAISED,
    RAISED_UNPICKLABLE,
    TIMED_OUT,
    WORKER_LOST,
)

Decoded = Tuple[bool, Any]


def _remote_text_error(text: str) -> RemoteTaskError:
    head, _, tb = text.partition("\n")
    err = RemoteTaskError(head)
    if tb:
        err.__cause__ = RemoteTraceback(tb)
    return err


def decode(status: int, payload: Any) -> Decoded:
    """Returns (True, value) or (False, exception)."""
    if status == OK or status == OK_OUT_OF_BAND:
        loads = pickle.loads if status == OK else loads_out_of_band
        try:
            if type(payload) is bytes:
                return True, loads(payload)
            return True, payload.load_with(loads)  # a large one, lent without a copy
        except Exception as e:
            err = RemoteTaskError(f"the task's result could not be unpickled in the parent: {e!r}")
            err.__cause__ = e
            return False, err
    if status == RAISED:
        text = "<no description>"
        try:
            inner, text = pickle.loads(payload)
            return False, pickle.loads(inner)
        except Exception as e:
            err = _remote_text_error(text)
            err.args = (f"{err.args[0]} (the exception could not be unpickled here: {e!r})",)
            return False, err
    if status == ENCODING_ERROR:
        try:
            return False, pickle.loads(payload)
        except Exception as e:
            err = RemoteTaskError(f"the task's result could not be pickled, nor its error: {e!r}")
            return False, err
    text = payload.decode("utf-8", "replace")
    if status == RAISED_UNPICKLABLE:
        return False, _remote_text_error(text)
    if status == WORKER_LOST:
        return False, WorkerLostError(text)
    if status == POOL_BROKEN:
        return False, BrokenProcessPool(text)
    if status == TIMED_OUT:
        return False, TaskTimeoutError(text)
    if status == CANCELLED:
        return False, CancelledError()
    return False, RuntimeError(f"unknown task status {status}: {text}")


def encoding_error(exc: BaseException, value: Any) -> MaybeEncodingError:
    return MaybeEncodingError(exc, value)
