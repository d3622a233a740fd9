"""In-process cases: one row on one implementation, run where it is made.

A case server (``server``) runs one of these in a fresh interpreter of its
own, for every round of a row (and a fresh one per round of the payload
rows). ``open`` makes the pool (untimed) and warms it up, ``run`` is the
timed part, ``check`` looks at its result: each does what the row's
``Workload`` (``Row.work``) says.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .adapters import open_executor, open_pool
from .workloads import Config, Row, Workload


class Case:
    """One row on one implementation, in this process."""

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        if row.work is None:
            raise ValueError(f"row {row.key} runs nothing in a pool")
        self.row, self.impl, self.cfg = row, impl, cfg
        self.work: Workload = row.work
        self.api: Any = None
        self.data: Any = None
        # Seconds ``open`` took to make the pool and warm it up.
        self.setup: Optional[float] = None

    def open(self) -> None:
        processes = self.row.workers or self.cfg.processes
        opener = open_executor if self.work.executor else open_pool
        t0 = time.perf_counter()
        self.api = opener(self.impl, self.cfg.start_method, processes)
        opened = time.perf_counter() - t0
        self.data = self.work.data(self.row.n)
        self.work.prepare(self.row.n)
        # Workers up and every code path exercised once before the clock.
        t0 = time.perf_counter()
        self.work.warm(self.api, list(range(4 * processes)))
        self.setup = opened + time.perf_counter() - t0

    def run(self) -> Any:
        return self.work.run(self.api, self.data)

    def check(self, result: Any) -> Optional[str]:
        return None if self.work.check(result, self.row.n) else "wrong result"

    def close(self) -> None:
        self.data = None
        if self.api is not None:
            api, self.api = self.api, None
            api.close()


class SerialCase(Case):
    """The work in this process, one item after the other: the baseline of
    the efficiency row (the cpu-bound workload's ``run_serial``)."""

    def open(self) -> None:
        self.data = self.work.data(self.row.n)

    def run(self) -> Any:
        return self.work.run_serial(self.data)

    def check(self, result: Any) -> Optional[str]:
        return None  # the serial results are the reference

    def close(self) -> None:
        pass


def make_case(row: Row, impl: str, cfg: Config) -> Case:
    """The in-process case of ``row`` on ``impl`` ("serial": its baseline);
    raises NotAvailable where ``impl`` has no equivalent."""
    if impl == "serial":
        return SerialCase(row, impl, cfg)
    if row.work is not None:
        row.work.available(impl)
    return Case(row, impl, cfg)
