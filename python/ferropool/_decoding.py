"""Turning a task's (status, payload) from the engine into a value or an
exception. The statuses are ``protocol::ResultStatus`` of the Rust engine,
exported by ``_native``; this is the one place where they become Python
exceptions."""

from __future__ import annotations

import pickle

from ._native import (
    CANCELLED,
    ENCODING_ERROR,
    OK,
    OK_OUT_OF_BAND,
    OK_PACKED,
    POOL_BROKEN,
    RAISED,
    RAISED_UNPICKLABLE,
    TIMED_OUT,
    WORKER_LOST,
    unpack_numbers,
    unpack_numbers_into,
)
from ._pickling import loads_out_of_band

# The exception classes are imported where an outcome needs one: `_errors`
# brings in `concurrent.futures.process` and `multiprocessing.pool` brings in
# `multiprocessing.connection`, milliseconds a short script that raises
# nothing would pay at start-up (the stdlib's Pool needs neither).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Tuple

    from ._errors import RemoteTaskError, TaskTransferError

    Decoded = Tuple[bool, Any]

# The stage a RAISED outcome failed at, as `_worker` sends it.
IN_CALL, IN_ARGUMENTS, IN_FUNCTION = 0, 1, 2
_STAGE_TEXT = {
    IN_ARGUMENTS: "the task's arguments could not be unpickled in the worker",
    IN_FUNCTION: "the task's function could not be unpickled in the worker",
}


def _remote_text_error(text: str) -> RemoteTaskError:
    from multiprocessing.pool import RemoteTraceback

    from ._errors import RemoteTaskError

    head, _, tb = text.partition("\n")
    err = RemoteTaskError(head)
    if tb:
        err.__cause__ = RemoteTraceback(tb)
    return err


def _transfer_error(message: str, cause: BaseException) -> TaskTransferError:
    from ._errors import TaskTransferError

    err = TaskTransferError(f"{message}: {cause!r}")
    err.__cause__ = cause
    return err


def _unpickle(loads: Callable[[Any], Any], payload: Any) -> Any:
    if type(payload) is bytes:
        return loads(payload)
    return payload.load_with(loads)  # a large one, lent without a copy


_UNPACK_FAILED = "the task's result could not be unpacked in the parent"


def _unpacked(unpack: Callable[..., Any], *args: Any) -> Decoded:
    """(True, unpack(*args)) or (False, the TaskTransferError of packed
    bytes that are not in the packed form)."""
    try:
        return True, unpack(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        return False, _transfer_error(_UNPACK_FAILED, e)


def decode_packed_into(payload: Any, target: List[Any], start: int, count: int) -> Decoded:
    """An OK_PACKED chunk of a map straight into `target[start:start +
    count]`: (True, how many results it held; written only when `count`)
    or (False, exception). Never raises but KeyboardInterrupt (see decode)."""
    return _unpacked(unpack_numbers_into, payload, target, start, count)


def decode(status: int, payload: Any, executor: bool = False) -> Decoded:
    """Returns (True, value) or (False, exception). Never raises, whatever
    unpickling does (`sys.exit()` in a `__reduce__` included): the thread
    that serves outcomes must survive it. Only KeyboardInterrupt, which
    comes from the user and not from the data, goes through.

    `executor`: the worker's traceback is chained as the stdlib executor
    chains it (`concurrent.futures.process._RemoteTraceback`)."""
    if status == OK or status == OK_OUT_OF_BAND:
        try:
            return True, _unpickle(pickle.loads if status == OK else loads_out_of_band, payload)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            return False, _transfer_error(
                "the task's result could not be unpickled in the parent", e
            )
    if status == OK_PACKED:
        return _unpacked(unpack_numbers, payload)
    if status == RAISED:
        from multiprocessing.pool import RemoteTraceback

        text = "<no description>"
        try:
            inner, text, stage = pickle.loads(payload)
            exc = pickle.loads(inner)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            head, _, tb = text.partition("\n")
            if tb and e.__cause__ is None:
                # Printed before the unpickling error: where the task raised.
                e.__cause__ = RemoteTraceback(tb)
            return False, _transfer_error(
                f"the task raised {head}, which could not be unpickled in the parent", e
            )
        if executor and type(exc.__cause__) is RemoteTraceback:
            from concurrent.futures.process import _RemoteTraceback as _ExecutorRemoteTraceback

            exc.__cause__ = _ExecutorRemoteTraceback(exc.__cause__.tb)
        if stage in _STAGE_TEXT:
            return False, _transfer_error(_STAGE_TEXT[stage], exc)
        return False, exc
    if status == ENCODING_ERROR:
        try:
            return False, pickle.loads(payload)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            from ._errors import RemoteTaskError

            err = RemoteTaskError(f"the task's result could not be pickled, nor its error: {e!r}")
            return False, err
    text = payload.decode("utf-8", "replace")
    if status == RAISED_UNPICKLABLE:
        return False, _remote_text_error(text)
    from concurrent.futures import CancelledError

    from ._errors import BrokenProcessPool, TaskTimeoutError, WorkerLostError

    if status == WORKER_LOST:
        return False, WorkerLostError(text)
    if status == POOL_BROKEN:
        return False, BrokenProcessPool(text)
    if status == TIMED_OUT:
        return False, TaskTimeoutError(text)
    if status == CANCELLED:
        return False, CancelledError()
    return False, RuntimeError(f"unknown task status {status}: {text}")
