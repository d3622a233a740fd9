"""The stdlib's surface that other libraries read beyond the documented API,
offered so that code written against ``multiprocessing.Pool`` and
``concurrent.futures.ProcessPoolExecutor`` accepts ferropool's:

* ``isinstance(pool, multiprocessing.pool.Pool)`` and
  ``isinstance(executor, concurrent.futures.ProcessPoolExecutor)`` are true
  (dask tells a Pool from an executor that way). The objects report, as their
  ``__class__``, a subclass of both their own class and the stdlib's, as
  ``unittest.mock`` does for a spec: ``isinstance`` consults ``__class__``
  when the type itself does not match. ``type(obj)`` is still ferropool's
  class, and none of the stdlib's machinery runs. The stdlib's module is
  never imported for this: code that can ask has imported it already.
* ``Pool._pool``: one read-only handle per worker (``pid``, ``is_alive()``,
  ``exitcode``), as the stdlib's list of ``Process`` objects; and
  ``Pool._processes``, the worker count.
"""

from __future__ import annotations

import sys

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# (ferropool's class, the stdlib's) -> the class reported as `__class__`.
_views: Dict[Tuple[type, type], type] = {}


def class_seen_as(cls: type, module_name: str, class_name: str) -> type:
    """What an instance of `cls` reports as its `__class__`: `cls`, or, once
    the stdlib's `module_name` is imported, a subclass of `cls` and of the
    stdlib's `class_name` (made once, never instantiated)."""
    module = sys.modules.get(module_name)
    stdlib_class = getattr(module, class_name, None) if module is not None else None
    # Patched (see _patching): the stand-in's isinstance knows ferropool's.
    stdlib_class = getattr(stdlib_class, "_stdlib_class", stdlib_class)
    if not isinstance(stdlib_class, type) or issubclass(cls, stdlib_class):
        return cls  # not imported yet, or patched to ferropool's own class
    key = (cls, stdlib_class)
    view = _views.get(key)
    if view is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        view = _views[key] = type(cls.__name__, (cls, stdlib_class), namespace)
    return view


class WorkerHandle:
    """One worker of a Pool, as an entry of ``Pool._pool``: its ``pid``
    (None for a worker still being started), ``is_alive()`` and
    ``exitcode`` (None while it runs; afterwards its exit code, -N for
    signal N, as ``multiprocessing.Process.exitcode``)."""

    __slots__ = ("_engine", "pid")

    def __init__(self, engine: Any, pid: Optional[int]) -> None:
        self._engine = engine
        self.pid = pid

    def is_alive(self) -> bool:
        # Until its exit status is known, as the stdlib's (which waits for it).
        return self.pid is not None and bool(self._engine.worker_alive(self.pid))

    @property
    def exitcode(self) -> Optional[int]:
        if self.pid is None or self.is_alive():
            return None
        code: Optional[int] = self._engine.exit_code(self.pid)
        return code

    def __repr__(self) -> str:
        if self.pid is None:
            return "<WorkerHandle starting>"
        state = "alive" if self.is_alive() else f"exitcode={self.exitcode}"
        return f"<WorkerHandle pid={self.pid} {state}>"


def worker_handles(engine: Any, processes: int) -> List[WorkerHandle]:
    """The workers of a pool of `processes`, in worker order; a worker
    being replaced or started shows as a handle without a pid, so that the
    list has one entry per worker, as the stdlib's."""
    pids = engine.status()[2]
    handles = [WorkerHandle(engine, pid) for pid in pids]
    handles += [WorkerHandle(engine, None) for _ in range(processes - len(handles))]
    return handles
