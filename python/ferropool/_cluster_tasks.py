"""What runs on a cluster's workers (ferropool.dask's Dask workers): one task
per chunk, through the very code a local ferropool worker runs
(`_worker`'s task runners), so results, exceptions and the errors of what
cannot be pickled come back as they do locally, as (status, bytes) that the
caller decodes with `_decoding`.

Outside the `dask` package, and importing nothing of Dask's: with a task
timeout the chunks run in a local pool's workers (see `_in_child`), which
must not pay for importing `distributed` before their first task.

The function of a job is pickled once by the caller (see
`_session.Session.new_job` for how it travels), and each worker process
keeps the functions it has unpickled lately, by their pickle."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict

from . import _worker
from ._native import TIMED_OUT, WORKER_LOST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

# Functions kept unpickled per worker process (the jobs seen lately).
KEPT_FUNCTIONS = 64

# By the pickle itself (equal pickles, the same function).
_functions: OrderedDict[bytes, Any] = OrderedDict()
_functions_lock = threading.Lock()
_runners: dict[Tuple[bool, Any], Callable[[int, Any, bytes], Tuple[Any, ...]]] = {}


def loads_for(for_workers: Any) -> Any:
    """The `loads` of a pool's serializer (`for_workers`: None, pickle's)."""
    if for_workers is None:
        import pickle

        return pickle.loads
    from ._serializers import loads_in_worker

    return loads_in_worker(for_workers)


def _runner(executor: bool, for_workers: Any) -> Callable[[int, Any, bytes], Tuple[Any, ...]]:
    key = (executor, None if for_workers is None else repr(for_workers))
    run = _runners.get(key)
    if run is None:
        run = _runners[key] = _worker._task_runner(executor, loads_for(for_workers))
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
    task_timeout: Optional[float] = None,
) -> Tuple[int, bytes, str, int, float]:
    """Runs one chunk (or one call) on this Dask worker: returns (status,
    bytes) as a local worker sends them, then, for ``stats()``, this
    worker's address and pid and the seconds the chunk took. With
    `task_timeout`, in a child of this worker (see `_in_child`)."""
    started = time.perf_counter()
    chunk = (pickled_function, mode, payload, executor, for_workers)
    status, data = _in_child(task_timeout, chunk) if task_timeout is not None else _run(*chunk)
    address = str(sys.modules["distributed"].get_worker().address)
    return status, data, address, os.getpid(), time.perf_counter() - started


def _run(
    pickled_function: bytes, mode: int, payload: bytes, executor: bool, for_workers: Any
) -> Tuple[int, bytes]:
    try:
        func = _function(pickled_function, loads_for(for_workers))
    except BaseException as e:
        return _worker.load_failed(e)
    try:
        # (status, bytes): the arguments and result that follow are for a
        # local worker's loop (see _worker._task_runner).
        status, data = _runner(executor, for_workers)(mode, func, payload)[:2]
        return status, data
    except BaseException as e:
        # A Pool's runner lets SystemExit and KeyboardInterrupt through: a
        # local worker dies of them and the task is lost. A Dask worker
        # thread cannot die for it; the task is lost all the same.
        text = f"the task ended its worker with {type(e).__name__}: {e}"
        return WORKER_LOST, text.encode("utf-8", "replace")


# Per worker process and task timeout: a local ferropool pool whose workers
# run the chunks of pools with that timeout.
_timed_pools: dict[float, Any] = {}
_timed_pools_lock = threading.Lock()


def _in_child(task_timeout: float, chunk: Tuple[Any, ...]) -> Tuple[int, bytes]:
    """Runs `chunk` in a local ferropool pool of this Dask worker process,
    one child per worker thread, with the pool's `task_timeout`: a Dask worker
    cannot stop a task its thread runs, but the local engine kills a child
    that runs past its time, and replaces it. The local pool's failures
    (timed out, child died) become the chunk's outcome, as locally.
    Forkserver: this process runs threads of Dask's, which a fork copies in
    whatever state they are."""
    with _timed_pools_lock:
        pool = _timed_pools.get(task_timeout)
        if pool is None:
            import ferropool

            # A Dask worker's thread count (distributed is loaded here).
            dask_worker = sys.modules["distributed"].get_worker()
            threads = dask_worker.state.nthreads
            context = ferropool.get_context("forkserver")
            pool = context.Pool(threads, task_timeout=task_timeout)
            _timed_pools[task_timeout] = pool
    from ._errors import TaskTimeoutError, WorkerLostError

    try:
        outcome: Tuple[int, bytes] = pool.apply(_run, chunk)
    except TaskTimeoutError as e:
        return TIMED_OUT, str(e).encode("utf-8", "replace")
    except WorkerLostError as e:
        return WORKER_LOST, str(e).encode("utf-8", "replace")
    return outcome
