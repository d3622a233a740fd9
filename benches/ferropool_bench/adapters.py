"""The implementations compared, and one small API over them.

``open_pool`` and ``open_executor`` give a Pool-like object (``apply``, ``map``,
``imap_unordered``, ``close``) for ferropool, the stdlib and the peers (loky,
billiard, pebble, mpire); ``NotAvailable`` marks a workload an implementation
has no equivalent of. The start-up workloads run ``startup_once`` in a fresh
interpreter (``run_probe``, which runs this module's ``_probe_main``).

"ferropool-dask" is ``ferropool.dask.Pool`` on a 2-worker ``LocalCluster``
it starts itself: an implementation of ``OPT_IN``, which runs only in the
rows that name it (rows 11: the cost of going remote, against ferropool's
local engine), and n/a where ``distributed`` is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from .tasks import inc

# The directory holding this package (benches/ in a checkout). Every
# interpreter the bench starts (case servers, start-up probes) gets it on
# PYTHONPATH, and their workers inherit it: a worker of any start method and
# implementation imports the task functions by name from it.
BENCHES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PEERS = ["loky", "billiard", "pebble", "mpire"]
# Implementations that run only in the rows naming them (``Row.impls``).
OPT_IN = ["ferropool-dask"]
IMPLEMENTATIONS = ["ferropool", "stdlib", *PEERS, *OPT_IN]


def installed_implementations() -> List[str]:
    """ferropool, the stdlib, every peer that can be imported here, and the
    opt-in implementations (n/a in their rows where they cannot run)."""
    out = ["ferropool", "stdlib"]
    for peer in PEERS:
        try:
            importlib.import_module(peer)
        except Exception:
            continue
        out.append(peer)
    return out + OPT_IN


def check_available(impl: str) -> None:
    """Raises NotAvailable where ``impl`` cannot run here at all (looked up
    without importing it)."""
    if impl == "ferropool-dask" and importlib.util.find_spec("distributed") is None:
        raise NotAvailable("distributed is not installed (pip install 'ferropool[dask]')")


def versions(impls: Sequence[str]) -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    # What each implementation's version is: ferropool-dask's, Dask's.
    dists = {
        "ferropool": "ferropool",
        "loky": "loky",
        "billiard": "billiard",
        "pebble": "pebble",
        "mpire": "mpire",
        "ferropool-dask": "distributed",
    }
    for impl in impls:
        if impl in dists:
            try:
                out[dists[impl]] = metadata.version(dists[impl])
            except metadata.PackageNotFoundError:
                out[dists[impl]] = "?"
    try:
        out["numpy"] = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        pass
    return out


# ---------------------------------------------------------------------------
# Adapters: one small API over every implementation.


class NotAvailable(Exception):
    """This implementation has no equivalent of the workload (shown as n/a)."""


def default_chunksize(n_items: int, processes: int) -> int:
    """multiprocessing.Pool.map's rule."""
    chunksize, extra = divmod(n_items, processes * 4)
    return chunksize + 1 if extra else chunksize


class PoolAPI:
    """multiprocessing.Pool's API: ferropool, the stdlib, billiard."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def apply(self, f: Callable[[Any], Any], x: Any) -> Any:
        return self.pool.apply_async(f, (x,)).get()

    def map(self, f: Callable[[Any], Any], xs: List[Any], chunksize: Optional[int]) -> List[Any]:
        return self.pool.map(f, xs, chunksize)

    def imap_unordered(self, f: Callable[[Any], Any], xs: List[Any], chunksize: int) -> List[Any]:
        return list(self.pool.imap_unordered(f, xs, chunksize))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class ExecutorAPI:
    """concurrent.futures' API: ferropool's and the stdlib's executors, loky.
    As a Pool stand-in: apply is submit().result(); map with the default
    chunksize gets the Pool's default chunksize (an executor's own default
    is 1); there is no imap_unordered."""

    def __init__(self, executor: Any, processes: int) -> None:
        self.executor = executor
        self.processes = processes

    def apply(self, f: Callable[[Any], Any], x: Any) -> Any:
        return self.executor.submit(f, x).result()

    def map(self, f: Callable[[Any], Any], xs: List[Any], chunksize: Optional[int]) -> List[Any]:
        if chunksize is None:
            chunksize = default_chunksize(len(xs), self.processes)
        return list(self.executor.map(f, xs, chunksize=chunksize))

    def imap_unordered(self, f: Callable[[Any], Any], xs: List[Any], chunksize: int) -> List[Any]:
        raise NotAvailable("executor API: no imap_unordered")

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class PebbleAPI(ExecutorAPI):
    """pebble.ProcessPool: schedule() futures, map() returns a future of an
    iterator."""

    def apply(self, f: Callable[[Any], Any], x: Any) -> Any:
        return self.executor.schedule(f, args=(x,)).result()

    def map(self, f: Callable[[Any], Any], xs: List[Any], chunksize: Optional[int]) -> List[Any]:
        if chunksize is None:
            chunksize = default_chunksize(len(xs), self.processes)
        return list(self.executor.map(f, xs, chunksize=chunksize).result())

    def imap_unordered(self, f: Callable[[Any], Any], xs: List[Any], chunksize: int) -> List[Any]:
        raise NotAvailable("pebble: no imap_unordered")

    def close(self) -> None:
        self.executor.close()
        self.executor.join()


class MpireAPI:
    """mpire.WorkerPool with keep_alive (workers stay up between calls)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def apply(self, f: Callable[[Any], Any], x: Any) -> Any:
        return self.pool.apply_async(f, args=(x,)).get()

    def map(self, f: Callable[[Any], Any], xs: List[Any], chunksize: Optional[int]) -> List[Any]:
        return self.pool.map(f, xs, chunk_size=chunksize, concatenate_numpy_output=False)

    def imap_unordered(self, f: Callable[[Any], Any], xs: List[Any], chunksize: int) -> List[Any]:
        return list(self.pool.imap_unordered(f, xs, chunk_size=chunksize))

    def close(self) -> None:
        self.pool.stop_and_join()
        self.pool.terminate()


def _loky_context(method: str) -> Any:
    ctx_mod = importlib.import_module("loky.backend.context")
    with warnings.catch_warnings():
        # loky warns that fork "does not respect POSIX"; it works, and the
        # comparison wants the same start method for everyone.
        warnings.simplefilter("ignore", UserWarning)
        return ctx_mod.get_context(method)


def open_pool(impl: str, method: str, processes: int) -> Any:
    """A pool of ``processes`` workers, Pool-like API (see the adapters)."""
    if impl == "ferropool":
        import ferropool

        return PoolAPI(ferropool.get_context(method).Pool(processes))
    if impl == "stdlib":
        return PoolAPI(multiprocessing.get_context(method).Pool(processes))
    if impl == "ferropool-dask":
        # A LocalCluster of `processes` single-threaded workers, started here
        # (the start method is Dask's own) and closed with the pool.
        check_available(impl)
        dask = importlib.import_module("ferropool.dask")
        return PoolAPI(dask.Pool(processes))
    if impl == "billiard":
        billiard = importlib.import_module("billiard")
        return PoolAPI(billiard.get_context(method).Pool(processes))
    if impl == "loky":
        loky = importlib.import_module("loky")
        return ExecutorAPI(
            loky.ProcessPoolExecutor(processes, context=_loky_context(method)), processes
        )
    if impl == "pebble":
        pebble = importlib.import_module("pebble")
        pool = pebble.ProcessPool(processes, context=multiprocessing.get_context(method))
        return PebbleAPI(pool, processes)
    if impl == "mpire":
        mpire = importlib.import_module("mpire")
        return MpireAPI(mpire.WorkerPool(processes, start_method=method, keep_alive=True))
    raise ValueError(f"unknown implementation {impl!r}")


def open_executor(impl: str, method: str, processes: int) -> Any:
    """An executor (submit/map) of ``processes`` workers."""
    if impl == "ferropool":
        import ferropool

        ctx = multiprocessing.get_context(method)
        return ExecutorAPI(ferropool.ProcessPoolExecutor(processes, mp_context=ctx), processes)
    if impl == "stdlib":
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context(method)
        return ExecutorAPI(ProcessPoolExecutor(processes, mp_context=ctx), processes)
    if impl in ("loky", "pebble"):
        return open_pool(impl, method, processes)  # they are executors already
    raise NotAvailable(f"{impl}: no concurrent.futures executor")


def startup_once(impl: str, method: str, processes: int = 2, n: int = 4) -> None:
    """Create a pool, one map over ``n`` items, close and join."""
    if impl in ("ferropool", "stdlib", "billiard"):
        if impl == "ferropool":
            import ferropool

            ctx: Any = ferropool.get_context(method)
        elif impl == "stdlib":
            ctx = multiprocessing.get_context(method)
        else:
            ctx = importlib.import_module("billiard").get_context(method)
        pool = ctx.Pool(processes)
        result = pool.map(inc, range(n))
        pool.close()
        pool.join()
    elif impl == "loky":
        loky = importlib.import_module("loky")
        ex = loky.ProcessPoolExecutor(processes, context=_loky_context(method))
        result = list(ex.map(inc, range(n)))
        ex.shutdown(wait=True)
    elif impl == "pebble":
        pebble = importlib.import_module("pebble")
        pp = pebble.ProcessPool(processes, context=multiprocessing.get_context(method))
        result = list(pp.map(inc, range(n)).result())
        pp.close()
        pp.join()
    elif impl == "mpire":
        mpire = importlib.import_module("mpire")
        with mpire.WorkerPool(processes, start_method=method) as wp:
            result = wp.map(inc, range(n))  # keep_alive=False: workers joined at the end
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    if list(result) != list(range(1, n + 1)):
        raise AssertionError(f"start-up map returned {result!r}")


_PREIMPORT = {
    "ferropool": ["ferropool", "ferropool.pool"],
    "stdlib": ["multiprocessing.pool"],
    "billiard": ["billiard", "billiard.pool"],
    "loky": ["loky"],
    "pebble": ["pebble"],
    "mpire": ["mpire"],
}


def _probe_main(argv: List[str]) -> None:
    """Run in a fresh interpreter: ``impl method first|repeated count``.
    Prints a JSON list of the seconds each timed start-up took."""
    impl, method, which, count = argv[0], argv[1], argv[2], int(argv[3])
    for mod in _PREIMPORT[impl]:
        importlib.import_module(mod)
    times = []
    if which == "repeated":
        startup_once(impl, method)  # the first pool, untimed
    for _ in range(1 if which == "first" else count):
        t0 = time.perf_counter()
        startup_once(impl, method)
        times.append(time.perf_counter() - t0)
    print(json.dumps(times), flush=True)


def child_env() -> Dict[str, str]:
    """This environment, with BENCHES first on PYTHONPATH."""
    path = [BENCHES, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def run_in_fresh_interpreter(
    what: str, entry: str, args: Sequence[str], timeout: float = 300
) -> List[float]:
    """Runs ``entry(argv)`` (``module:function``) in a fresh interpreter;
    returns the JSON list of seconds it prints last. `what` names it in
    errors."""
    module, func = entry.split(":")
    code = f"import sys; from {module} import {func} as m; m(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{what} probe failed (exit {proc.returncode}): {tail}")
    times: List[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return times


def run_probe(impl: str, method: str, first: bool, count: int, timeout: float = 300) -> List[float]:
    which = "first" if first else "repeated"
    args = [impl, method, which, str(count)]
    return run_in_fresh_interpreter(
        "start-up", "ferropool_bench.adapters:_probe_main", args, timeout
    )
