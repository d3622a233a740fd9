"""Each workload of ferropool.bench on each installed implementation.

The pool is opened and warmed up before the benchmark and closed after it, so
pytest-benchmark times the workload only. Start-up workloads run in a fresh
interpreter per round (a "first pool" has to be the first of its process):
pytest-benchmark's own numbers for them include that interpreter's start, so
the ratio table uses the time measured inside it.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from ferropool.bench.adapters import NotAvailable
from ferropool.bench.runner import Measurement, make_case
from ferropool.bench.workloads import Config


def test_workload(
    benchmark: Any,
    bench_case: Any,
    bench_cfg: Config,
    bench_store: Dict[str, Dict[str, Measurement]],
) -> None:
    row, impl = bench_case
    benchmark.group = f"{row.label} {row.title}"
    results = bench_store.setdefault(row.key, {})
    try:
        case = make_case(row, impl, bench_cfg)
    except NotAvailable as e:
        results[impl] = Measurement([], f"n/a: {e}")
        pytest.skip(f"n/a: {e}")
    measurement = Measurement()
    results[impl] = measurement
    try:
        try:
            case.open()
        except NotAvailable as e:
            measurement.error = f"n/a: {e}"
            pytest.skip(f"n/a: {e}")
        inner: List[float] = []

        def run() -> Any:
            result = case.run()
            if case.self_timed:  # one time, or a list of them (see PayloadCase)
                inner.extend(float(t) for t in (result if isinstance(result, list) else [result]))
            return result

        result = benchmark.pedantic(run, rounds=bench_cfg.repeats, iterations=1, warmup_rounds=0)
        if case.self_timed:
            measurement.times = inner
            benchmark.extra_info["seconds_in_fresh_interpreter"] = inner
        else:
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
