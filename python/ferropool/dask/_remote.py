"""What runs on the Dask workers: one task per chunk, through the very code a
local ferropool worker runs (`ferropool._worker`'s task runners), so results,
exceptions and the errors of what cannot be pickled come back as they do
locally, as (status, bytes) that the caller decodes with `_decoding`.

The function of a job is pickled once by the caller (see
`_session.Session.new_job` for how it travels), and each worker process
keeps the functions it has unpickled lately, by their pickle."""

from __future__ import annotations

import threading
from collections import OrderedDict

from distributed.diagnostics.plugin import WorkerPlugin

from .. import _worker
from .._native import WORKER_LOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

# Functions kept unpickled per worker process (the jobs seen lately).
KEPT_FUNCTIONS = 64

# By the pickle itself (equal pickles, the same function).
_functions: OrderedDict[bytes, Any] = OrderedDict()
_functions_lock = threading.Lock()
_runners: dict[Tuple[bool, Any], Callable[[int, Any, bytes], Tuple[Any, ...]]] = {}


def _loads_for(for_workers: Any) -> Any:
    if for_workers is None:
        import pickle

        return pickle.loads
    from .._serializers import loads_in_worker

    return loads_in_worker(for_workers)


def _runner(executor: bool, for_workers: Any) -> Callable[[int, Any, bytes], Tuple[Any, ...]]:
    key = (executor, None if for_workers is None else repr(for_workers))
    run = _runners.get(key)
    if run is None:
        run = _runners[key] = _worker._task_runner(executor, _loads_for(for_workers))
    return run


def _function(pickled: bytes, loads: Callable[[Any], Any]) -> Any:
    with _functions_lock:
        func = _functions.get(pickled)
        if func is not None:
            _functions.move_to_end(pickled)
            return func
    func = loads(pickled)
    with _functions_lock:
        _functions[pickled] = func
        while len(_functions) > KEPT_FUNCTIONS:
            _functions.popitem(last=False)
    return func


def run_chunk(
    pickled_function: bytes,
    mode: int,
    payload: bytes,
    executor: bool = False,
    for_workers: Optional[Any] = None,
) -> Tuple[int, bytes]:
    """Runs one chunk (or one call) on this Dask worker: returns (status,
    bytes) as a local worker sends them."""
    try:
        func = _function(pickled_function, _loads_for(for_workers))
    except BaseException as e:
        return _worker.load_failed(e)
    try:
        return _runner(executor, for_workers)(mode, func, payload)
    except BaseException as e:
        # A Pool's runner lets SystemExit and KeyboardInterrupt through: a
        # local worker dies of them and the task is lost. A Dask worker
        # thread cannot die for it; the task is lost all the same.
        text = f"the task ended its worker with {type(e).__name__}: {e}"
        return WORKER_LOST, text.encode("utf-8", "replace")


class Initializer(WorkerPlugin):
    """A Dask worker plugin running a pool's `initializer(*initargs)` once in
    each worker process, before its first task of that pool (Dask runs a
    plugin's setup on every worker when it is registered, and on every
    worker that joins later)."""

    def __init__(self, function: bytes, arguments: bytes, for_workers: Any) -> None:
        self.function = function
        self.arguments = arguments
        self.for_workers = for_workers

    def setup(self, worker: Any) -> None:
        loads = _loads_for(self.for_workers)
        args, kwds = loads(self.arguments)
        loads(self.function)(*args, **kwds)
