"""A workload that fails, for test_bench_runner.py. A case server imports it
by name, so it lives in a module of its own; the tests that use it put
tests/ on the server's PYTHONPATH (``on_server_path``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferropool_bench.workloads import MapInc

MESSAGE = "this workload fails on purpose"


@dataclass(frozen=True)
class FailingWork(MapInc):
    """Opens and warms up as ``map(inc, ...)`` does, then fails in the round."""

    def run(self, api: Any, data: Any) -> Any:
        raise ValueError(MESSAGE)
