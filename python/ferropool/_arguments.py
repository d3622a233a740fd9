"""The checks of the arguments ``Pool`` and ``ProcessPoolExecutor`` take,
written once for both. Where the stdlib's two classes word the same check
differently (the worker count, tasks per worker, chunk size), each keeps the
stdlib's own error, type and message: code that catches it keeps working."""

from __future__ import annotations

import os

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


def pool_arguments(
    processes: Optional[int],
    initializer: Any,
    maxtasksperchild: Optional[int],
    task_timeout: Any,
    max_memory_per_child: Any,
) -> int:
    """Checks `Pool`'s arguments; returns the worker count."""
    if processes is None:
        processes = os.cpu_count() or 1
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    if maxtasksperchild is not None:
        if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
            raise ValueError("maxtasksperchild must be a positive int or None")
    _check_initializer(initializer)
    check_limits(task_timeout, max_memory_per_child)
    return processes


def executor_arguments(
    max_workers: Optional[int],
    initializer: Any,
    max_tasks_per_child: Optional[int],
    task_timeout: Any,
    max_memory_per_child: Any,
) -> int:
    """Checks `ProcessPoolExecutor`'s arguments; returns the worker count."""
    if max_workers is None:
        max_workers = os.cpu_count() or 1
    elif max_workers <= 0:
        raise ValueError("max_workers must be greater than 0")
    _check_initializer(initializer)  # before max_tasks_per_child, as the stdlib
    if max_tasks_per_child is not None:
        if not isinstance(max_tasks_per_child, int):
            raise TypeError("max_tasks_per_child must be an integer")
        elif max_tasks_per_child <= 0:
            raise ValueError("max_tasks_per_child must be >= 1")
    check_limits(task_timeout, max_memory_per_child)
    return max_workers


def _check_initializer(initializer: Any) -> None:
    if initializer is not None and not callable(initializer):
        raise TypeError("initializer must be a callable")


def check_limits(task_timeout: Any, max_memory_per_child: Any) -> None:
    """ferropool's own keyword arguments, the same for both."""
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)):
            raise TypeError(
                f"task_timeout must be a number of seconds or None, not {task_timeout!r}"
            )
        if not task_timeout > 0:
            raise ValueError(f"task_timeout must be positive, not {task_timeout!r}")
    limit = max_memory_per_child
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(
                f"max_memory_per_child must be a number of bytes or None, not {limit!r}"
            )
        if limit <= 0:
            raise ValueError(f"max_memory_per_child must be positive, not {limit!r}")


def check_callable(func: Any) -> None:
    """The task function of every submitting call."""
    if not callable(func):
        raise TypeError(f"'{type(func).__name__}' object is not callable")


def check_pool_chunksize(chunksize: Optional[int]) -> None:
    if chunksize is not None and chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")


def check_executor_chunksize(chunksize: int) -> None:
    if chunksize < 1:
        raise ValueError("chunksize must be >= 1.")


def check_progress(progress: Any) -> None:
    """The maps' `progress=` (see _progress)."""
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError(
            f"progress must be True, False, None or a callable taking (done, total), "
            f"not {progress!r}"
        )


def check_buffersize(buffersize: Any) -> None:
    """Python 3.14's `buffersize` of the lazy maps (None: the default)."""
    if buffersize is not None:
        if isinstance(buffersize, bool) or not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
