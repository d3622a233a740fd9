"""The benchmark suite: ``python -m ferropool bench`` and ``make bench``.

Every workload runs on ferropool and on the stdlib in the same run, and on the
peers (loky, billiard, pebble, mpire) that are importable. Each is timed
``repeats`` times (best of), with the pool created and warmed up outside the
timed region, except for the start-up workloads, which time exactly that. The
report gives each implementation's time and the ratio ferropool / stdlib
(lower is better) against the target of the project's performance issue.

The task functions live at module level (``ferropool.benchmarks.inc``,
``identity``, ``burn``) so that spawn and forkserver workers can import them;
this module imports nothing heavy at import time.

    python -m ferropool bench                  # the full comparison (a few minutes)
    python -m ferropool bench --quick          # smaller sizes, one round
    python -m ferropool bench --json out.json --chart out.png
    python -m ferropool bench --from-json out.json --chart out.png   # redraw only
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

IMPLEMENTATIONS = ["ferropool", "stdlib", "loky", "billiard", "pebble", "mpire"]
PEERS = IMPLEMENTATIONS[2:]
MIB = 1 << 20
START_METHODS = ["fork", "spawn", "forkserver"]


# ---------------------------------------------------------------------------
# Task functions (module level: workers of every start method import them).


def inc(x: int) -> int:
    return x + 1


def identity(x: Any) -> Any:
    return x


def burn(n: int) -> str:
    """About 15 ms of pure-Python work (on a 2020s x86 core), checkable."""
    h = hashlib.sha256(str(n).encode())
    total = 0
    for i in range(180_000):
        total = (total * 31 + i * n) % 1_000_003
    h.update(str(total).encode())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------
# Configuration and the list of rows of the report.


@dataclass
class Config:
    quick: bool = False
    processes: int = 2
    start_method: str = field(default_factory=multiprocessing.get_start_method)
    repeats: int = 3
    # A peer's case stops repeating once it has spent this long (ferropool
    # and the stdlib always get every repeat: their ratio is the point).
    peer_budget_s: float = 4.0

    @classmethod
    def make(
        cls,
        quick: bool = False,
        processes: int = 2,
        start_method: Optional[str] = None,
        repeats: Optional[int] = None,
    ) -> Config:
        return cls(
            quick=quick,
            processes=processes,
            start_method=start_method or multiprocessing.get_start_method(),
            repeats=repeats if repeats is not None else (1 if quick else 3),
        )

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class Row:
    key: str
    label: str  # "1", "5a", ...: what --workloads selects
    title: str
    kind: str  # pool | executor | startup | cpu | efficiency
    target: Optional[float]  # ratio ferropool / stdlib; for efficiency: the minimum
    n: int = 0
    method: str = ""
    first: bool = True


def _k(n: int) -> str:
    return f"{n:,}"


def rows(cfg: Config) -> List[Row]:
    """The rows of the report, with the sizes of this configuration."""
    n_apply = cfg.size(2_000, 200)
    n_small = cfg.size(20_000, 2_000)
    n_big = cfg.size(200_000, 20_000)
    n_payload = cfg.size(64, 8)
    n_cpu = cfg.size(64, 16)
    w = cfg.processes
    out = [
        Row(
            "apply_round_trip",
            "1",
            f"apply_async(f, (i,)).get() x {_k(n_apply)}",
            "pool",
            0.20,
            n_apply,
        ),
        Row(
            "map_chunksize_1",
            "2",
            f"map(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
        ),
        Row(
            "imap_unordered_chunksize_1",
            "3",
            f"imap_unordered(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
        ),
        Row(
            "map_default_chunksize",
            "4",
            f"map(f, range({_k(n_big)})), default chunksize",
            "pool",
            0.60,
            n_big,
        ),
        Row(
            "payload_bytes",
            "5a",
            f"map(identity, {n_payload} x 8 MiB bytes, chunksize=1)",
            "pool",
            0.35,
            n_payload,
        ),
        Row(
            "payload_arrays",
            "5b",
            f"map(identity, {n_payload} x 8 MiB numpy, chunksize=1)",
            "pool",
            0.25,
            n_payload,
        ),
    ]
    available = multiprocessing.get_all_start_methods()
    for m in START_METHODS:
        if m not in available:
            continue
        out.append(
            Row(f"startup_{m}_first", "6", f"start-up {m}: first pool", "startup", 1.0, 4, m, True)
        )
        out.append(
            Row(
                f"startup_{m}_repeated",
                "6",
                f"start-up {m}: repeated pools",
                "startup",
                1.0,
                4,
                m,
                False,
            )
        )
    out += [
        Row("cpu_bound", "7", f"cpu-bound: {n_cpu} x ~15 ms tasks", "cpu", 1.05, n_cpu),
        Row("cpu_efficiency", "7", f"cpu-bound: % of {w}x serial speed", "efficiency", 0.90, n_cpu),
        Row(
            "executor_round_trip",
            "8a",
            f"executor submit(f, i).result() x {_k(n_apply)}",
            "executor",
            0.20,
            n_apply,
        ),
        Row(
            "executor_map_chunksize_1",
            "8b",
            f"executor.map(f, range({_k(n_small)}), chunksize=1)",
            "executor",
            0.15,
            n_small,
        ),
    ]
    return out


def select_rows(all_rows: List[Row], spec: Optional[str]) -> List[Row]:
    """``--workloads 1,5a,startup_fork_first``: by label (``5`` takes 5a and
    5b) or by key."""
    if not spec:
        return all_rows
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [
        r
        for r in all_rows
        if any(
            r.key == s or r.label == s or (s.isdigit() and r.label.rstrip("ab") == s)
            for s in wanted
        )
    ]
    if any(r.key == "cpu_efficiency" for r in chosen) and not any(
        r.key == "cpu_bound" for r in chosen
    ):
        chosen.insert(0, next(r for r in all_rows if r.key == "cpu_bound"))
    return chosen


def installed_implementations() -> List[str]:
    """ferropool, the stdlib and every peer that can be imported here."""
    out = ["ferropool", "stdlib"]
    for peer in PEERS:
        try:
            importlib.import_module(peer)
        except Exception:
            continue
        out.append(peer)
    return out


def versions(impls: Sequence[str]) -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    dists = {
        "ferropool": "ferropool",
        "loky": "loky",
        "billiard": "billiard",
        "pebble": "pebble",
        "mpire": "mpire",
    }
    for impl in impls:
        if impl in dists:
            try:
                out[impl] = metadata.version(dists[impl])
            except metadata.PackageNotFoundError:
                out[impl] = "?"
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
    if impl == "loky":
        loky = importlib.import_module("loky")
        return ExecutorAPI(
            loky.ProcessPoolExecutor(processes, context=_loky_context(method)), processes
        )
    if impl == "pebble":
        pebble = importlib.import_module("pebble")
        pool = pebble.ProcessPool(processes, context=multiprocessing.get_context(method))
        return PebbleAPI(pool, processes)
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


def run_probe(impl: str, method: str, first: bool, count: int, timeout: float = 300) -> List[float]:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from ferropool.benchmarks import _probe_main; _probe_main(sys.argv[1:])",
        impl,
        method,
        "first" if first else "repeated",
        str(count),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"start-up probe failed (exit {proc.returncode}): {tail}")
    times: List[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return times


# ---------------------------------------------------------------------------
# Cases: one row on one implementation.

_serial_cpu: Dict[int, List[str]] = {}


def serial_cpu(n: int) -> List[str]:
    """The cpu-bound workload run in this process (the expected results)."""
    if n not in _serial_cpu:
        _serial_cpu[n] = [burn(i) for i in range(n)]
    return _serial_cpu[n]


def _payload(row: Row) -> Any:
    if row.key == "payload_bytes":
        return bytes(8 * MIB)
    try:
        np = importlib.import_module("numpy")
    except ImportError:
        raise NotAvailable("numpy is not installed") from None
    return np.arange(MIB, dtype=np.float64)  # 8 MiB


class Case:
    """One row on one implementation. ``open`` makes the pool (untimed) and
    warms it up, ``run`` is the timed part, ``check`` looks at its result.
    Start-up cases are ``self_timed``: ``run`` returns the seconds measured
    inside a fresh interpreter."""

    self_timed = False

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        self.row, self.impl, self.cfg = row, impl, cfg
        self.api: Any = None
        self.data: Any = None

    def open(self) -> None:
        row, cfg = self.row, self.cfg
        if row.kind == "executor":
            self.api = open_executor(self.impl, cfg.start_method, cfg.processes)
        else:
            self.api = open_pool(self.impl, cfg.start_method, cfg.processes)
        if row.key.startswith("payload"):
            item = _payload(row)
            self.data = [item] * row.n
        elif row.key == "cpu_bound":
            self.data = list(range(row.n))
        else:
            self.data = list(range(row.n))
        # Workers up and every code path exercised once before the clock.
        warm = list(range(4 * cfg.processes))
        if row.key == "imap_unordered_chunksize_1":
            self.api.imap_unordered(inc, warm, 1)
        elif row.key in ("apply_round_trip", "executor_round_trip"):
            for i in warm:
                self.api.apply(inc, i)
        elif row.key.startswith("payload"):
            self.api.map(identity, self.data[:2], 1)
        else:
            self.api.map(inc, warm, 1)

    def run(self) -> Any:
        key, api, data = self.row.key, self.api, self.data
        if key in ("apply_round_trip", "executor_round_trip"):
            total = 0
            for i in data:
                total += api.apply(inc, i)
            return total
        if key in ("map_chunksize_1", "executor_map_chunksize_1"):
            return api.map(inc, data, 1)
        if key == "imap_unordered_chunksize_1":
            return api.imap_unordered(inc, data, 1)
        if key == "map_default_chunksize":
            return api.map(inc, data, None)
        if key.startswith("payload"):
            return api.map(identity, data, 1)
        if key == "cpu_bound":
            return api.map(burn, data, 1)
        raise ValueError(key)

    def check(self, result: Any) -> Optional[str]:
        key, n = self.row.key, self.row.n
        if key in ("apply_round_trip", "executor_round_trip"):
            ok = result == n * (n + 1) // 2
        elif key in ("map_chunksize_1", "executor_map_chunksize_1", "map_default_chunksize"):
            ok = list(result) == list(range(1, n + 1))
        elif key == "imap_unordered_chunksize_1":
            ok = sorted(result) == list(range(1, n + 1))
        elif key == "payload_bytes":
            ok = len(result) == n and all(len(r) == 8 * MIB for r in result)
        elif key == "payload_arrays":
            ok = len(result) == n and all(r.shape == (MIB,) and r[-1] == MIB - 1 for r in result)
        elif key == "cpu_bound":
            ok = list(result) == serial_cpu(n)
        else:
            ok = True
        return None if ok else "wrong result"

    def close(self) -> None:
        self.data = None
        if self.api is not None:
            api, self.api = self.api, None
            api.close()


class StartupCase(Case):
    self_timed = True

    def open(self) -> None:
        pass

    def run(self) -> Any:
        count = 1 if self.row.first else (2 if self.cfg.quick else 5)
        return min(run_probe(self.impl, self.row.method, self.row.first, count))

    def check(self, result: Any) -> Optional[str]:
        return None

    def close(self) -> None:
        pass


class SerialCase(Case):
    """The cpu-bound workload in this process: the baseline of efficiency."""

    def open(self) -> None:
        self.data = list(range(self.row.n))

    def run(self) -> Any:
        return [burn(i) for i in self.data]

    def check(self, result: Any) -> Optional[str]:
        _serial_cpu.setdefault(self.row.n, result)
        return None

    def close(self) -> None:
        pass


def make_case(row: Row, impl: str, cfg: Config) -> Case:
    if impl == "serial":
        return SerialCase(row, impl, cfg)
    if row.kind == "startup":
        return StartupCase(row, impl, cfg)
    if row.kind == "executor" and impl in ("billiard", "mpire"):
        raise NotAvailable(f"{impl}: no concurrent.futures executor")
    if row.key == "payload_arrays":
        try:
            importlib.import_module("numpy")
        except ImportError:
            raise NotAvailable("numpy is not installed") from None
    return Case(row, impl, cfg)


@dataclass
class Measurement:
    times: List[float] = field(default_factory=list)
    error: Optional[str] = None  # "n/a: ...", "error: ...", "wrong result"

    @property
    def best(self) -> Optional[float]:
        return min(self.times) if self.times and self.error is None else None

    def to_json(self) -> Dict[str, Any]:
        return {"best": self.best, "times": self.times, "error": self.error}


def measure(row: Row, impl: str, cfg: Config) -> Measurement:
    """Time ``row`` on ``impl``: best of ``cfg.repeats`` runs."""
    out = Measurement()
    try:
        case = make_case(row, impl, cfg)
    except NotAvailable as e:
        out.error = f"n/a: {e}"
        return out
    spent = 0.0
    try:
        case.open()
        for i in range(cfg.repeats):
            gc.collect()
            t0 = time.perf_counter()
            result = case.run()
            elapsed = time.perf_counter() - t0
            if case.self_timed:
                out.times.append(float(result))
            else:
                out.times.append(elapsed)
                problem = case.check(result)
                if problem:
                    out.error = problem
                    return out
            del result
            spent += elapsed
            if impl in PEERS and spent > cfg.peer_budget_s and i + 1 < cfg.repeats:
                break
    except NotAvailable as e:
        out.error = f"n/a: {e}"
    except Exception as e:
        out.error = f"error: {type(e).__name__}: {e}"
    finally:
        try:
            case.close()
        except Exception as e:
            if out.error is None:
                out.error = f"error closing: {type(e).__name__}: {e}"
    return out


# ---------------------------------------------------------------------------
# Results, the table and the chart.


@dataclass
class RowResult:
    row: Row
    results: Dict[str, Measurement]

    def value(self, impl: str) -> Optional[float]:
        m = self.results.get(impl)
        return m.best if m else None

    @property
    def ratio(self) -> Optional[float]:
        if self.row.kind == "efficiency":
            return None
        fp, std = self.value("ferropool"), self.value("stdlib")
        return fp / std if fp is not None and std else None

    @property
    def met(self) -> Optional[bool]:
        if self.row.target is None:
            return None
        if self.row.kind == "efficiency":
            v = self.value("ferropool")
            return None if v is None else v >= self.row.target
        r = self.ratio
        return None if r is None else r <= self.row.target


def efficiency_row(row: Row, cpu: RowResult, serial: Measurement, processes: int) -> RowResult:
    """serial time / (workers x pool time), per implementation."""
    out: Dict[str, Measurement] = {}
    for impl, m in cpu.results.items():
        if m.best is not None and serial.best is not None:
            out[impl] = Measurement([serial.best / (processes * m.best)])
        else:
            out[impl] = Measurement([], m.error or "n/a")
    return RowResult(row, out)


def run_all(
    cfg: Config,
    impls: Sequence[str],
    selected: Sequence[Row],
    progress: Optional[Progress] = None,
) -> List[RowResult]:
    """Run every selected row on every implementation, interleaved per row."""
    out: List[RowResult] = []
    serial: Optional[Measurement] = None
    for row in selected:
        if row.kind == "efficiency":
            cpu = next((r for r in out if r.row.key == "cpu_bound"), None)
            if cpu is not None and serial is not None:
                out.append(efficiency_row(row, cpu, serial, cfg.processes))
            continue
        results: Dict[str, Measurement] = {}
        if row.kind == "cpu":
            if progress:
                progress.step(f"{row.title} · serial baseline")
            serial = measure(row, "serial", cfg)
        for impl in impls:
            if progress:
                progress.step(f"{row.title} · {impl}")
            results[impl] = measure(row, impl, cfg)
        out.append(RowResult(row, results))
    if progress:
        progress.done()
    return out


def count_steps(impls: Sequence[str], selected: Sequence[Row]) -> int:
    n = 0
    for row in selected:
        if row.kind != "efficiency":
            n += len(impls) + (1 if row.kind == "cpu" else 0)
    return n


def fmt_seconds(t: Optional[float]) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms" if t >= 0.1 else f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _cell(rr: RowResult, impl: str) -> str:
    m = rr.results.get(impl)
    if m is None:
        return "-"
    if m.error is not None:
        if m.error.startswith("n/a"):
            return "n/a"
        return "WRONG" if m.error == "wrong result" else "error"
    if rr.row.kind == "efficiency":
        return f"{100 * m.times[0]:.0f} %"
    return fmt_seconds(m.best)


def _target(row: Row) -> str:
    if row.target is None:
        return ""
    if row.kind == "efficiency":
        return f">= {100 * row.target:.0f} %"
    return f"<= {row.target:.2f}"


def table_lines(
    results: List[RowResult], impls: Sequence[str], markdown: bool = False
) -> List[str]:
    header = ["workload", *impls, "ratio", "target", "met"]
    body = []
    for rr in results:
        r = rr.ratio
        met = rr.met
        body.append(
            [
                f"{rr.row.label} {rr.row.title}",
                *(_cell(rr, impl) for impl in impls),
                "" if r is None else f"{r:.2f}",
                _target(rr.row),
                "" if met is None else ("yes" if met else "NO"),
            ]
        )
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + [":---:"]) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in body]
        return lines
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines


def notes(results: List[RowResult]) -> List[str]:
    """One line per n/a, error or wrong result, deduplicated."""
    seen: Dict[str, List[str]] = {}
    for rr in results:
        if rr.row.kind == "efficiency":
            continue
        for impl, m in rr.results.items():
            if m.error is not None:
                seen.setdefault(f"{impl}: {m.error}", []).append(rr.row.label)
    return [f"{msg} (workload {', '.join(dict.fromkeys(labels))})" for msg, labels in seen.items()]


def unmet(results: List[RowResult]) -> List[RowResult]:
    return [rr for rr in results if rr.met is False]


def metadata(cfg: Config, impls: Sequence[str]) -> Dict[str, Any]:
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "processes": cfg.processes,
        "start_method": cfg.start_method,
        "quick": cfg.quick,
        "repeats": cfg.repeats,
        "implementations": list(impls),
        "versions": versions(impls),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def to_json(results: List[RowResult], meta: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "meta": meta,
        "rows": [
            {
                "key": rr.row.key,
                "label": rr.row.label,
                "title": rr.row.title,
                "kind": rr.row.kind,
                "target": rr.row.target,
                "method": rr.row.method,
                "first": rr.row.first,
                "n": rr.row.n,
                "ratio": rr.ratio,
                "met": rr.met,
                "results": {impl: m.to_json() for impl, m in rr.results.items()},
            }
            for rr in results
        ],
    }


def from_json(data: Dict[str, Any]) -> List[RowResult]:
    out = []
    for d in data["rows"]:
        row = Row(
            d["key"],
            d["label"],
            d["title"],
            d["kind"],
            d["target"],
            d.get("n", 0),
            d.get("method", ""),
            d.get("first", True),
        )
        res = {
            impl: Measurement(list(m.get("times") or []), m.get("error"))
            for impl, m in d["results"].items()
        }
        out.append(RowResult(row, res))
    return out


def report_lines(
    results: List[RowResult], meta: Dict[str, Any], markdown: bool = False
) -> List[str]:
    impls = meta["implementations"]
    lines = table_lines(results, impls, markdown)
    lines.append("")
    lines.append(
        f"ratio = ferropool / stdlib (same run, lower is better); best of {meta['repeats']}; "
        f"{meta['processes']} workers, start method {meta['start_method']!r} "
        "(start-up rows: the method named)."
    )
    lines.append(
        "stdlib = multiprocessing.Pool, or concurrent.futures.ProcessPoolExecutor for 8a/8b. "
        "loky and pebble are executors: apply = submit().result(), default chunksize = "
        "the Pool's rule."
    )
    for n in notes(results):
        lines.append(f"note: {n}")
    return lines


def draw_chart(results: List[RowResult], meta: Dict[str, Any], path: str) -> None:
    """A PNG bar chart of each implementation's time relative to the stdlib,
    per workload (log scale), with ferropool's target marked."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    shown = [rr for rr in results if rr.row.kind != "efficiency" and rr.ratio is not None]
    impls = [i for i in meta["implementations"] if i != "stdlib"]
    colors = {
        "ferropool": "#d9480f",
        "loky": "#4c6ef5",
        "billiard": "#5c940d",
        "pebble": "#ae3ec9",
        "mpire": "#1098ad",
    }
    n = len(shown)
    bar_h = 0.8 / max(1, len(impls))
    fig, ax = plt.subplots(figsize=(11, 0.62 * n + 1.8))
    for j, impl in enumerate(impls):
        ys, xs = [], []
        for i, rr in enumerate(shown):
            v, std = rr.value(impl), rr.value("stdlib")
            if v is not None and std:
                ys.append(i - 0.4 + bar_h * (j + 0.5))
                xs.append(v / std)
        alpha = 1.0 if impl == "ferropool" else 0.55
        ax.barh(
            ys,
            xs,
            height=bar_h * 0.9,
            color=colors.get(impl, "gray"),
            alpha=alpha,
            label=impl if impl == "ferropool" else f"{impl} (peer)",
        )
    for i, rr in enumerate(shown):
        ratio = rr.ratio
        if rr.row.target is not None:
            ax.plot(
                [rr.row.target] * 2,
                [i - 0.45, i + 0.45],
                color="black",
                lw=2.2,
                solid_capstyle="butt",
            )
        if ratio is not None:
            y = i - 0.4 + bar_h * 0.5
            ax.annotate(
                f"{ratio:.2f}",
                (ratio, y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                fontweight="bold",
                color="#d9480f" if rr.met else "#c92a2a",
            )
    ax.plot([], [], color="black", lw=2.2, label="target (ferropool)")
    ax.axvline(1.0, color="gray", ls="--", lw=1, label="stdlib = 1")
    ax.set_xscale("log")
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{rr.row.label} {rr.row.title}" for rr in shown], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlabel("time relative to the stdlib (log scale; lower is better)")
    ax.grid(axis="x", which="both", alpha=0.25)
    date = str(meta.get("date", ""))[:10]
    ax.set_title(
        f"ferropool vs stdlib and peers: {meta['processes']} workers, "
        f"{meta['cpu_count']} CPUs, Python {meta['python']}, {meta['start_method']}, {date}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# The progress bar (one line on stderr) and the command line.


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.total, self.stream, self.enabled = max(1, total), stream, enabled
        self.count = 0
        self.t0 = time.perf_counter()
        self.tty = enabled and stream.isatty()

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        self.count += 1
        elapsed = time.perf_counter() - self.t0
        head = f"[{self.count}/{self.total}] {elapsed:5.0f}s "
        if self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            width = 24
            filled = int(width * (self.count - 1) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"{bar} {head}{label}"[: cols - 1]
            self.stream.write("\r" + line.ljust(cols - 1))
        else:
            self.stream.write(f"{head}{label}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (cols - 1) + "\r")
            self.stream.flush()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ferropool bench",
        description="Time ferropool against multiprocessing / concurrent.futures (and loky, "
        "billiard, pebble, mpire when installed) and print the ratio ferropool / stdlib.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round each")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="draw a PNG chart (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--from-json", metavar="PATH", help="report saved results; run nothing")
    parser.add_argument("--processes", type=int, default=2, help="workers per pool (default 2)")
    parser.add_argument(
        "--start-method",
        default=None,
        help="for every workload but start-up (default: the platform's)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds per case, best kept (default 3, --quick 1)",
    )
    parser.add_argument(
        "--impls", default=None, help="comma-separated subset of " + ",".join(IMPLEMENTATIONS)
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help="comma-separated labels or keys, e.g. 1,2,5a,6 (default: all)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        results, meta = from_json(data), data["meta"]
    else:
        cfg = Config.make(args.quick, args.processes, args.start_method, args.repeats)
        impls = installed_implementations()
        if args.impls:
            wanted = [s.strip() for s in args.impls.split(",")]
            unknown = [w for w in wanted if w not in IMPLEMENTATIONS]
            if unknown:
                parser.error(f"unknown implementations: {', '.join(unknown)}")
            impls = [i for i in impls if i in wanted]
        selected = select_rows(rows(cfg), args.workloads)
        if not selected:
            parser.error("no workload matches --workloads")
        meta = metadata(cfg, impls)
        print(
            f"ferropool bench: {cfg.processes} workers, start method {cfg.start_method!r}, "
            f"Python {meta['python']}, {meta['cpu_count']} CPUs, "
            f"{'quick' if cfg.quick else 'full'} run; comparing {', '.join(impls)}",
            flush=True,
        )
        progress = Progress(count_steps(impls, selected), enabled=not args.no_progress)
        results = run_all(cfg, impls, selected, progress)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(to_json(results, meta), f, indent=1)
                f.write("\n")
    for line in report_lines(results, meta, args.markdown):
        print(line)
    missing = unmet(results)
    if missing:
        print("targets not met: " + ", ".join(f"{rr.row.label} {rr.row.title}" for rr in missing))
    else:
        print("every target met")
    if args.chart:
        draw_chart(results, meta, args.chart)
        print(f"chart written to {args.chart}")
    wrong = any(m.error == "wrong result" for rr in results for m in rr.results.values())
    return 1 if wrong else 0
