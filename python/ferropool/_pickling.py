"""Pickling what goes to the workers, with errors that name the culprit.

Everything a task needs is pickled in the caller's thread before anything is
sent. When that fails, the error keeps its type (TypeError, AttributeError,
PicklingError...) but its message says which object could not be sent: the
function, argument 2, keyword argument 'x', item 17 of the input. Finding the
culprit costs extra pickling only on that error path.
"""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler
from typing import Any, Optional, Sequence


def dumps(obj: Any) -> bytes:
    return bytes(ForkingPickler.dumps(obj))


def _short(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _picklable(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


def _named(error: Exception, what: str) -> Exception:
    message = f"cannot send {what} to a worker: {error}"
    try:
        named = type(error)(message)
    except Exception:
        named = pickle.PicklingError(message)
    named.__cause__ = error
    return named


def dumps_function(func: Any) -> bytes:
    try:
        return dumps(func)
    except Exception as e:
        raise _named(e, f"the function {_short(func)}") from e


def dumps_call(args: tuple, kwds: dict) -> bytes:
    try:
        return dumps((args, kwds))
    except Exception as e:
        raise _named(e, _culprit_in_call(args, kwds)) from e


def _culprit_in_call(args: tuple, kwds: dict) -> str:
    for i, arg in enumerate(args):
        if not _picklable(arg):
            return f"argument {i} ({_short(arg)})"
    for key, value in kwds.items():
        if not _picklable(value):
            return f"keyword argument {key!r} ({_short(value)})"
    return "the call's arguments"


def chunk_error(error: Exception, chunk: Sequence[Any], first_index: int) -> Exception:
    """The error for a chunk of map input that could not be pickled."""
    culprit: Optional[str] = None
    for i, item in enumerate(chunk):
        if not _picklable(item):
            culprit = f"item {first_index + i} of the input ({_short(item)})"
            break
    return _named(error, culprit or f"input items {first_index}..{first_index + len(chunk) - 1}")


def dumps_chunk(chunk: Sequence[Any], first_index: int) -> bytes:
    try:
        return dumps(chunk)
    except Exception as e:
        raise chunk_error(e, chunk, first_index) from e
