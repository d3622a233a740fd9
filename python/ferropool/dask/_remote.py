"""Dask worker plugins of ferropool.dask."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .._cluster_tasks import loads_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
        loads = loads_for(self.for_workers)
        args, kwds = loads(self.arguments)
        loads(self.function)(*args, **kwds)
