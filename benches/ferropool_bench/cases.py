"""In-process cases: one row on one implementation, run where it is made.

A case server (``server``) runs one of these in a fresh interpreter of its
own, and so does every round of the payload rows; the pytest-benchmark
harness in ``benches/`` runs them in its own process. ``open`` makes the pool
(untimed) and warms it up, ``run`` is the timed part, ``check`` looks at its
result.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional

from .adapters import NotAvailable, open_executor, open_pool
from .workloads import MIB, Config, Row, burn, identity, inc

_serial_cpu: Dict[int, List[str]] = {}


def serial_cpu(n: int) -> List[str]:
    """The cpu-bound workload run in this process (the expected results)."""
    if n not in _serial_cpu:
        _serial_cpu[n] = [burn(i) for i in range(n)]
    return _serial_cpu[n]


def _payload(row: Row) -> Any:
    if row.runs == "payload_bytes":
        return bytes(8 * MIB)
    try:
        np = importlib.import_module("numpy")
    except ImportError:
        raise NotAvailable("numpy is not installed") from None
    return np.arange(MIB, dtype=np.float64)  # 8 MiB


class Case:
    """One row on one implementation, in this process."""

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        self.row, self.impl, self.cfg = row, impl, cfg
        self.api: Any = None
        self.data: Any = None

    def open(self) -> None:
        row, cfg = self.row, self.cfg
        processes = row.workers or cfg.processes
        if row.kind == "executor":
            self.api = open_executor(self.impl, cfg.start_method, processes)
        else:
            self.api = open_pool(self.impl, cfg.start_method, processes)
        if row.runs.startswith("payload"):
            item = _payload(row)
            self.data = [item] * row.n
        elif row.runs in ("cpu_bound", "apply_round_trip", "executor_round_trip"):
            self.data = list(range(row.n))
        else:
            # The map rows are defined over a range, as the issue states them
            # (a list would skip the work of making the input's ints).
            self.data = range(row.n)
        if row.runs == "cpu_bound":
            serial_cpu(row.n)  # the expected results, before any clock
        # Workers up and every code path exercised once before the clock.
        # A payload row warms up with small tasks only: its first payload
        # call is what the payload rows time as "cold".
        warm = list(range(4 * processes))
        if row.runs == "imap_unordered_chunksize_1":
            self.api.imap_unordered(inc, warm, 1)
        elif row.runs in ("apply_round_trip", "executor_round_trip"):
            for i in warm:
                self.api.apply(inc, i)
        else:
            self.api.map(inc, warm, 1)

    def run(self) -> Any:
        key, api, data = self.row.runs, self.api, self.data
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
        raise ValueError(f"no such workload: {key!r}")

    def check(self, result: Any) -> Optional[str]:
        key, n = self.row.runs, self.row.n
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


def check_available(row: Row, impl: str) -> None:
    """Raises NotAvailable where ``impl`` has no equivalent of ``row``."""
    if row.kind == "executor" and impl in ("billiard", "mpire"):
        raise NotAvailable(f"{impl}: no concurrent.futures executor")
    if row.runs == "payload_arrays":
        try:
            importlib.import_module("numpy")
        except ImportError:
            raise NotAvailable("numpy is not installed") from None


def make_case(row: Row, impl: str, cfg: Config) -> Case:
    """The in-process case of a pool, executor or cpu-bound row."""
    if row.kind in ("startup", "script", "efficiency"):
        raise ValueError(f"row {row.key} has no in-process case")
    if impl == "serial":
        return SerialCase(row, impl, cfg)
    check_available(row, impl)
    return Case(row, impl, cfg)
