"""pytest-benchmark harness for ferropool's benchmark suite (``make bench``).

Every row of ``ferropool_bench.suite`` is a test per implementation
installed here (ferropool, the stdlib, loky, billiard, pebble, mpire; the
cpu-bound row also its serial baseline), measured by the same runner as
``python benches/run.py`` (``ferropool_bench.runner.RowRounds``): each
implementation in a fresh interpreter of its own. pytest-benchmark prints
its own statistics per group (one group per row), timed from this process;
at the end this conftest prints the same ratio table as ``python
benches/run.py`` (quiet only) from the times measured where the work ran:
the median time per implementation, ferropool / stdlib of the medians, the
target and whether it is met (rows 11: ferropool.dask against the local
engine, in a table of their own, no target; ``-k dask`` runs only them).
Unlike ``python benches/run.py``, the implementations run one after the
other (no interleaved rounds, so no per-round ratios), and every one gets
every round.

Options: --bench-quick (smaller sizes, one round), --bench-repeats N (at
least 5 but with --bench-quick),
--bench-impls ferropool,stdlib,..., --bench-workloads 1,5a,6,...,
--bench-json PATH, --bench-chart PATH.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, List

import pytest
from ferropool_bench.adapters import installed_implementations
from ferropool_bench.chart import draw_chart
from ferropool_bench.report import metadata, ratio_names, report_lines, summary_line
from ferropool_bench.results import BenchResults, Measurement, RowResult, to_json
from ferropool_bench.suite import rows, select_rows
from ferropool_bench.workloads import Config


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("ferropool-bench")
    group.addoption("--bench-quick", action="store_true", help="smaller sizes, one round")
    group.addoption(
        "--bench-repeats", type=int, default=None, help="rounds per case (the median kept)"
    )
    group.addoption("--bench-impls", default=None, help="comma-separated implementations")
    group.addoption("--bench-workloads", default=None, help="labels or keys, e.g. 1,5a,6")
    group.addoption("--bench-json", default=None, help="write the ratio table's data as JSON")
    group.addoption("--bench-chart", default=None, help="draw the ratio chart (PNG)")


def pytest_configure(config: Any) -> None:
    _config(config)  # a bad --bench-repeats is a usage error, before collection


def _config(config: Any) -> Config:
    cfg = getattr(config, "_ferropool_bench_cfg", None)
    if cfg is None:
        try:
            cfg = Config.make(
                quick=config.getoption("--bench-quick"),
                repeats=config.getoption("--bench-repeats"),
            )
        except ValueError as e:
            raise pytest.UsageError(f"--bench-repeats: {e}") from None
        # pytest-benchmark's statistics want every round of every
        # implementation: no peer stops early here.
        cfg = dataclasses.replace(cfg, peer_budget_s=math.inf)
        config._ferropool_bench_cfg = cfg
        config._ferropool_bench_store = {}
        impls = installed_implementations()
        wanted = config.getoption("--bench-impls")
        if wanted:
            impls = [i for i in impls if i in wanted.split(",")]
        config._ferropool_bench_impls = impls
        config._ferropool_bench_rows = select_rows(rows(cfg), config.getoption("--bench-workloads"))
    return cfg


def pytest_generate_tests(metafunc: Any) -> None:
    if "bench_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    _config(config)
    params, ids = [], []
    for row in config._ferropool_bench_rows:
        if row.derive is not None:
            continue  # derived from the rows before it (efficiency: the cpu-bound row)
        for name in row.case_names(config._ferropool_bench_impls):
            params.append((row, name))
            ids.append(f"{row.label}-{row.key}-{name}")
    metafunc.parametrize("bench_case", params, ids=ids)


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    for item in items:
        # The suite's own 60 s limit and warnings-as-errors are for tests;
        # a full benchmark case may take minutes, and peers may warn.
        item.add_marker(pytest.mark.timeout(1800))
        item.add_marker(pytest.mark.filterwarnings("default"))


@pytest.fixture
def bench_cfg(request: Any) -> Config:
    return _config(request.config)


@pytest.fixture
def bench_store(request: Any) -> Dict[str, Dict[str, Measurement]]:
    _config(request.config)
    store: Dict[str, Dict[str, Measurement]] = request.config._ferropool_bench_store
    return store


def _results(config: Any) -> BenchResults:
    store = config._ferropool_bench_store
    cfg = config._ferropool_bench_cfg
    out: List[RowResult] = []
    for row in config._ferropool_bench_rows:
        if row.derive is not None:
            derived = row.derive(row, out, cfg)
            if derived is not None:
                out.append(derived)
            continue
        got = store.get(row.key)
        if not got:
            continue
        missing = Measurement([], "n/a: not run")
        names = row.case_names(config._ferropool_bench_impls)
        out.append(RowResult(row, {i: got.get(i, missing) for i in names}))
    return BenchResults(quiet=out)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if getattr(config, "_ferropool_bench_store", None) is None:
        return
    results = _results(config)
    if not results.quiet:
        return
    meta = metadata(config._ferropool_bench_cfg, config._ferropool_bench_impls)
    meta["harness"] = "pytest-benchmark"  # the report says how its rounds ran
    meta["peer_budget_s"] = None  # none: every implementation ran every round
    tr = terminalreporter
    tr.section(f"{ratio_names(results.rows())} (medians, lower is better)")
    for line in report_lines(results, meta):
        tr.write_line(line)
    tr.write_line(summary_line(results))
    path = config.getoption("--bench-json")
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(to_json(results, meta), f, indent=1)
            f.write("\n")
        tr.write_line(f"results written to {path}")
    chart = config.getoption("--bench-chart")
    if chart:
        draw_chart(results, meta, chart)
        tr.write_line(f"chart written to {chart}")
