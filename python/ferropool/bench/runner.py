"""The runner: one ``Case`` per row and implementation, timed in rounds.

``measure_row`` opens each implementation's case (untimed), runs the rounds
interleaved across the implementations and keeps every time in a
``Measurement``; ``run_all`` does that for every selected row and returns one
``RowResult`` per row (the efficiency row is derived from the cpu-bound row
and its serial baseline).
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from .adapters import (
    PEERS,
    NotAvailable,
    open_executor,
    open_pool,
    run_in_fresh_interpreter,
    run_probe,
)
from .workloads import MIB, Config, Row, burn, identity, inc

# Rounds of a large-payload row (5a, 5b) in a full run: at least this many.
PAYLOAD_ROUNDS = 5

if TYPE_CHECKING:
    from .report import Progress


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
        # Workers up and every code path exercised once before the clock.
        warm = list(range(4 * processes))
        if row.runs == "imap_unordered_chunksize_1":
            self.api.imap_unordered(inc, warm, 1)
        elif row.runs in ("apply_round_trip", "executor_round_trip"):
            for i in warm:
                self.api.apply(inc, i)
        elif row.runs.startswith("payload"):
            # The whole input once: the first big map of a process grows its
            # allocator's heaps and buffer pools (glibc returns 8 MiB blocks
            # with munmap until its mmap threshold has risen), for every
            # implementation alike; the rounds then time the steady state.
            self.api.map(identity, self.data, 1)
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
        raise ValueError(key)

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


class PayloadCase(Case):
    """Large payloads (5a, 5b): every round of one implementation runs in one
    fresh interpreter of its own (pool opened and warmed up there, as for the
    other rows). A big allocation changes the process's allocator for what
    runs after it (glibc raises its mmap threshold once a big block is
    freed), so sharing a process, a row ran faster after another
    implementation's (measured: the stdlib's 5b took 1.66 s alone, 1.01 s
    right after ferropool's). The first call runs every round, at least
    PAYLOAD_ROUNDS (the kernel's handling of fresh memory makes single
    rounds vary by half), and returns all their times; later calls none."""

    self_timed = True

    def open(self) -> None:
        self._done = False

    def run(self) -> Any:
        if self._done:
            return []
        self._done = True
        cfg, row = self.cfg, self.row
        rounds = cfg.repeats if cfg.quick else max(cfg.repeats, PAYLOAD_ROUNDS)
        return run_payload_probe(self.impl, cfg.start_method, cfg.processes, row.key, row.n, rounds)

    def check(self, result: Any) -> Optional[str]:
        return None

    def close(self) -> None:
        pass


def _payload_probe_main(argv: Sequence[str]) -> None:
    """Run in a fresh interpreter: ``impl method processes key n rounds``.
    Opens and warms up a pool, times `rounds` maps, checks each; prints the
    JSON list of seconds, or exits with the problem."""
    impl, method, processes, key = argv[0], argv[1], int(argv[2]), argv[3]
    n, rounds = int(argv[4]), int(argv[5])
    row = Row(key, "", "", "pool", None, n)
    cfg = Config(quick=False, processes=processes, start_method=method, repeats=rounds)
    case = Case(row, impl, cfg)
    case.open()
    times = []
    try:
        for _ in range(rounds):
            gc.collect()
            t0 = time.perf_counter()
            result = case.run()
            times.append(time.perf_counter() - t0)
            problem = case.check(result)
            del result
            if problem:
                sys.exit(f"{impl}: {problem}")
    finally:
        case.close()
    print(json.dumps(times), flush=True)


def run_payload_probe(
    impl: str, method: str, processes: int, key: str, n: int, rounds: int, timeout: float = 600
) -> List[float]:
    args = [impl, method, str(processes), key, str(n), str(rounds)]
    entry = "ferropool.bench.runner:_payload_probe_main"
    return run_in_fresh_interpreter("payload", entry, args, timeout)


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
    if row.key.startswith("payload"):
        return PayloadCase(row, impl, cfg)
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


def _run_once(case: Case, out: Measurement) -> float:
    """One timed run of ``case``, recorded in ``out``; returns the wall time."""
    gc.collect()
    t0 = time.perf_counter()
    result = case.run()
    elapsed = time.perf_counter() - t0
    if case.self_timed:  # one time, or a list of them (see PayloadCase)
        out.times.extend(float(t) for t in (result if isinstance(result, list) else [result]))
    else:
        out.times.append(elapsed)
        problem = case.check(result)
        if problem:
            out.error = problem
    del result
    return elapsed


def measure_row(
    row: Row,
    impls: Sequence[str],
    cfg: Config,
    progress: Optional[Progress] = None,
) -> Dict[str, Measurement]:
    """Time ``row`` on each implementation: ``cfg.repeats`` rounds, each
    round running every implementation once in turn (so that a burst of
    outside load does not land on one implementation only); best kept. The
    pools are opened (untimed) in the first round, closed after the last."""
    out = {impl: Measurement() for impl in impls}
    cases: Dict[str, Case] = {}
    for impl in impls:
        try:
            cases[impl] = make_case(row, impl, cfg)
        except NotAvailable as e:
            out[impl].error = f"n/a: {e}"
    opened: List[Case] = []
    spent = dict.fromkeys(impls, 0.0)
    try:
        for rnd in range(cfg.repeats):
            for impl, case in cases.items():
                m = out[impl]
                if m.error is not None:
                    continue
                if rnd > 0 and impl in PEERS and spent[impl] > cfg.peer_budget_s:
                    continue
                if progress:
                    progress.step(f"{row.label} {row.title} · {impl} · round {rnd + 1}")
                try:
                    if rnd == 0:
                        opened.append(case)
                        case.open()
                    spent[impl] += _run_once(case, m)
                except NotAvailable as e:
                    m.error = f"n/a: {e}"
                except Exception as e:
                    m.error = f"error: {type(e).__name__}: {e}"
    finally:
        for case in reversed(opened):
            try:
                case.close()
            except Exception as e:
                if out[case.impl].error is None:
                    out[case.impl].error = f"error closing: {type(e).__name__}: {e}"
    return out


def measure(row: Row, impl: str, cfg: Config) -> Measurement:
    """Time ``row`` on ``impl`` alone: best of ``cfg.repeats`` runs."""
    return measure_row(row, [impl], cfg)[impl]


# ---------------------------------------------------------------------------
# Results.


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
        if impl == "serial":
            continue
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
    """Run every selected row on every implementation."""
    out: List[RowResult] = []
    for row in selected:
        if row.kind == "efficiency":
            cpu = next((r for r in out if r.row.key == "cpu_bound"), None)
            if cpu is not None and "serial" in cpu.results:
                out.append(efficiency_row(row, cpu, cpu.results["serial"], cfg.processes))
            continue
        # The cpu-bound row also times the work in this process (the serial
        # baseline of the efficiency row), in the same rounds.
        names = ["serial", *impls] if row.kind == "cpu" else list(impls)
        results = measure_row(row, names, cfg, progress)
        out.append(RowResult(row, results))
    if progress:
        progress.done()
    return out


def count_steps(impls: Sequence[str], selected: Sequence[Row], repeats: int) -> int:
    n = 0
    for row in selected:
        if row.kind != "efficiency":
            n += (len(impls) + (1 if row.kind == "cpu" else 0)) * repeats
    return n
