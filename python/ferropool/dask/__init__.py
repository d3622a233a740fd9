"""ferropool on a Dask cluster: the same ``Pool`` and ``ProcessPoolExecutor``
API, with the work running on the workers of a ``distributed`` cluster.

    from ferropool.dask import Pool          # was: from ferropool import Pool
    with Pool(address="tcp://scheduler:8786") as pool:
        results = pool.map(f, items)

Needs ``distributed`` (``pip install 'ferropool[dask]'``) here and ferropool
installed on every Dask worker."""

from __future__ import annotations

try:
    import distributed  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ferropool.dask needs Dask's distributed scheduler: pip install 'ferropool[dask]'"
    ) from e

from ._executor import ProcessPoolExecutor
from ._pool import Pool
from ._results import ApplyResult, AsyncResult, IMapIterator, MapResult

__all__ = [
    "Pool",
    "ProcessPoolExecutor",
    "AsyncResult",
    "ApplyResult",
    "MapResult",
    "IMapIterator",
]
