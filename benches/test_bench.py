"""Each row of ferropool_bench.suite on each installed implementation.

The test measures the row through the runner of ``python benches/run.py``
(``RowRounds``), for this one implementation: the case is opened (a fresh
interpreter of its own, the pool made and warmed up) before the benchmark,
and pytest-benchmark times each ``run_round`` from here, so its numbers
include talking to that interpreter (and for the start-up, payload and
whole-script rows, starting one per round). The ratio table at the end uses
the times measured where the work ran (and the payload rows' cold figures),
kept in the row's ``Measurement``.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from ferropool_bench.results import Measurement
from ferropool_bench.runner import RowRounds
from ferropool_bench.workloads import Config


def test_workload(
    benchmark: Any,
    bench_case: Any,
    bench_cfg: Config,
    bench_store: Dict[str, Dict[str, Measurement]],
) -> None:
    row, name = bench_case
    benchmark.group = f"{row.label} {row.title}"
    with RowRounds(row, [name], bench_cfg) as rounds:
        measurement = rounds.results[name]
        bench_store.setdefault(row.key, {})[name] = measurement
        rounds.open()
        _verdict(name, measurement)
        benchmark.pedantic(rounds.run_round, rounds=rounds.rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info["seconds_where_it_ran"] = measurement.times
    if measurement.cold:
        benchmark.extra_info["cold_seconds"] = measurement.cold
    _verdict(name, measurement)


def _verdict(name: str, measurement: Measurement) -> None:
    """n/a (no equivalent in this implementation) skips the test, as the
    table's n/a cell; an error or a wrong result fails it."""
    error = measurement.error
    if error is not None and error.startswith("n/a"):
        pytest.skip(error)
    assert error is None, f"{name}: {error}"
