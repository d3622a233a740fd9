"""Each workload of ferropool_bench on each installed implementation.

The pool rows run in this process: the pool is opened and warmed up before
the benchmark and closed after it, so pytest-benchmark times the workload
only. The rows that need a fresh interpreter or process per round (start-up,
large payloads, the whole script) run their round cases as
``python benches/run.py`` does: pytest-benchmark's own numbers for them
include that interpreter's start, so the ratio table uses the times measured
inside it (and the payload rows' cold figures).
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from ferropool_bench.adapters import NotAvailable
from ferropool_bench.rounds import PayloadCase, Round, make_round_case
from ferropool_bench.runner import Measurement, make_case
from ferropool_bench.workloads import Config, Row


def _fresh_per_round(row: Row) -> bool:
    return row.kind in ("startup", "script") or row.runs.startswith("payload")


def test_workload(
    benchmark: Any,
    bench_case: Any,
    bench_cfg: Config,
    bench_store: Dict[str, Dict[str, Measurement]],
) -> None:
    row, impl = bench_case
    benchmark.group = f"{row.label} {row.title}"
    results = bench_store.setdefault(row.key, {})
    measurement = Measurement()
    results[impl] = measurement
    if _fresh_per_round(row):
        _run_round_case(benchmark, row, impl, bench_cfg, measurement)
    else:
        _run_in_process(benchmark, row, impl, bench_cfg, measurement)


def _not_available(measurement: Measurement, e: NotAvailable) -> None:
    measurement.error = f"n/a: {e}"
    pytest.skip(f"n/a: {e}")


def _run_round_case(
    benchmark: Any, row: Row, impl: str, cfg: Config, measurement: Measurement
) -> None:
    try:
        case = make_round_case(row, impl, cfg)
        case.open()
    except NotAvailable as e:
        _not_available(measurement, e)
    rounds: List[Round] = []
    try:
        benchmark.pedantic(
            lambda: rounds.append(case.round()),
            rounds=cfg.rounds(row),
            iterations=1,
            warmup_rounds=0,
        )
    except NotAvailable as e:
        _not_available(measurement, e)
    except Exception as e:
        measurement.error = f"error: {type(e).__name__}: {e}"
        raise
    finally:
        case.close()
    measurement.times = [r.seconds for r in rounds]
    measurement.cold = [r.cold for r in rounds if r.cold is not None]
    benchmark.extra_info["seconds_in_fresh_interpreter"] = measurement.times
    if isinstance(case, PayloadCase):
        benchmark.extra_info["cold_seconds"] = measurement.cold


def _run_in_process(
    benchmark: Any, row: Row, impl: str, cfg: Config, measurement: Measurement
) -> None:
    try:
        case = make_case(row, impl, cfg)
    except NotAvailable as e:
        _not_available(measurement, e)
    try:
        try:
            case.open()
        except NotAvailable as e:
            _not_available(measurement, e)
        result = benchmark.pedantic(case.run, rounds=cfg.rounds(row), iterations=1, warmup_rounds=0)
        measurement.times = list(benchmark.stats.stats.data)
        problem = case.check(result)
        if problem:
            measurement.error = problem
        del result
        assert measurement.error is None, f"{impl}: {measurement.error}"
    except (pytest.skip.Exception, AssertionError):
        raise
    except Exception as e:
        measurement.error = f"error: {type(e).__name__}: {e}"
        raise
    finally:
        case.close()
