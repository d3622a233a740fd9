"""The benchmark suite's runner: case servers in fresh interpreters, rounds
interleaved into medians, error cells, the whole-script and payload rows,
quiet and loaded phases, JSON out and back in. Tiny sizes, ferropool and the
stdlib only; nothing here asserts a speed."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pickle
import signal
import time

import psutil
import pytest
from _bench_helpers import MESSAGE, FailingWork
from _support import TESTS
from ferropool import _demo_tasks
from ferropool_bench import cli, rounds, server, tasks
from ferropool_bench.report import report_lines, summary_line
from ferropool_bench.results import (
    BenchResults,
    Measurement,
    RowResult,
    efficiency_row,
    from_json,
    to_json,
)
from ferropool_bench.runner import RowRounds, measure_row, run_all
from ferropool_bench.server import CaseServer, ServerError
from ferropool_bench.suite import rows, select_rows
from ferropool_bench.workloads import Config, Row

IMPLS = ["ferropool", "stdlib"]


def quick(repeats: int = 1, **overrides: object) -> Config:
    cfg = Config.make(quick=True, repeats=repeats)
    return dataclasses.replace(cfg, **overrides)


def row(name: str, **changes: object) -> Row:
    found = next(r for r in rows(quick()) if r.key == name)
    return dataclasses.replace(found, **changes)


@pytest.fixture
def on_server_path(monkeypatch):
    """tests/ on the case servers' PYTHONPATH: they import _bench_helpers."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


def group_members(pgid: int) -> list:
    """The live processes of a process group (a case server's, with its
    workers)."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def gone(pgid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------------------
# The case server.


@pytest.mark.timeout(120)
@pytest.mark.parametrize("impl", IMPLS)
def test_case_server_times_rounds_and_closes(impl):
    s = CaseServer(row("apply_round_trip", n=20), impl, quick())
    try:
        s.start()
        pid = s.pid
        assert pid is not None
        assert len(group_members(pid)) >= 1 + 2  # the server and its 2 workers
        times = [s.run() for _ in range(3)]
        assert all(isinstance(t, float) and t > 0 for t in times)
        s.close()
        assert gone(pid)
    finally:
        s.kill()


@pytest.mark.timeout(120)
def test_a_server_error_is_reported_and_leaves_nothing(on_server_path):
    bad = row("map_chunksize_1", n=20, work=FailingWork())
    s = CaseServer(bad, "ferropool", quick())
    try:
        s.start()  # the pool opens and warms up: the workload fails in run
        pid = s.pid
        assert pid is not None
        with pytest.raises(ServerError, match=MESSAGE):
            s.run()
        assert s.pid is None
        assert gone(pid)
    finally:
        s.kill()


@pytest.mark.timeout(120)
def test_a_server_that_dies_is_noticed_even_while_its_workers_live():
    s = CaseServer(row("apply_round_trip", n=20), "stdlib", quick(start_method="fork"))
    try:
        s.start()
        pid = s.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # its forked workers still hold its answer pipe
        t0 = time.monotonic()
        with pytest.raises(ServerError, match=r"server died \(exit -9\)"):
            s.run()
        assert time.monotonic() - t0 < 30
        assert gone(pid)
    finally:
        s.kill()


@pytest.mark.timeout(60)
def test_a_server_that_fails_at_start_names_its_last_stderr_line(monkeypatch):
    def broken(r, impl, cfg):
        return base64.b64encode(pickle.dumps(("not", "a spec"))).decode()

    monkeypatch.setattr(server, "spec_arg", broken)
    s = CaseServer(row("apply_round_trip", n=20), "ferropool", quick())
    with pytest.raises(ServerError, match=r"died \(exit 1\) during 'start': ValueError"):
        s.start()
    assert s.proc is None


# ---------------------------------------------------------------------------
# Rows: rounds interleaved, medians, error cells.


@pytest.mark.timeout(120)
def test_measure_row_gives_every_round_and_medians():
    rr = measure_row(row("map_chunksize_1", n=50), IMPLS, quick(repeats=3))
    for impl in IMPLS:
        m = rr.results[impl]
        assert m.error is None
        assert len(m.times) == 3
        assert m.low is not None and m.high is not None and m.median is not None
        assert m.low <= m.median <= m.high
    fp, std = rr.results["ferropool"], rr.results["stdlib"]
    assert rr.ratio == pytest.approx(fp.median / std.median)
    assert rr.round_ratios == pytest.approx([a / b for a, b in zip(fp.times, std.times)])
    assert rr.worst_round_ratio == max(rr.round_ratios)


@pytest.mark.timeout(120)
def test_a_failing_case_becomes_an_error_cell_and_leaves_no_process(on_server_path):
    bad = row("map_chunksize_1", n=20, key="bench_test_failing_row", work=FailingWork())
    rr = measure_row(bad, IMPLS, quick(repeats=2, start_method="fork"))
    for impl in IMPLS:
        m = rr.results[impl]
        assert m.error is not None and m.error.startswith(f"error: ValueError: {MESSAGE}")
        assert m.median is None
    assert rr.ratio is None and rr.met is None
    # Forked workers keep their server's command line, which names the row.
    deadline = time.monotonic() + 5
    while True:
        left = []
        for p in psutil.process_iter(["cmdline"]):
            if any("bench_test_failing_row" in part for part in p.info["cmdline"] or []):
                left.append(p.pid)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == []


@pytest.mark.timeout(120)
def test_the_cpu_row_runs_its_serial_baseline_in_a_server_too():
    cfg = quick(repeats=1)
    cpu = measure_row(row("cpu_bound", n=2), IMPLS, cfg)
    assert set(cpu.results) == {"serial", *IMPLS}
    assert all(m.error is None and len(m.times) == 1 for m in cpu.results.values())
    eff = efficiency_row(row("cpu_efficiency"), cpu, cpu.results["serial"], cfg.processes)
    assert eff.value("ferropool") is not None and eff.ratio is None


@pytest.mark.timeout(120)
def test_payload_rounds_give_cold_and_warm():
    rr = measure_row(row("payload_bytes", n=2), IMPLS, quick(repeats=2))
    for impl in IMPLS:
        m = rr.results[impl]
        assert m.error is None
        assert len(m.times) == 2 and len(m.cold) == 2
    assert rr.cold_ratio is not None and len(rr.cold_round_ratios) == 2
    assert "cold" in {c.name for c in rr.checks()}


@pytest.mark.timeout(120)
def test_startup_rows_report_each_round():
    rr = measure_row(row("startup_fork_first"), IMPLS, quick(repeats=2))
    assert all(len(rr.results[i].times) == 2 for i in IMPLS)
    assert len(rr.round_ratios) == 2


# ---------------------------------------------------------------------------
# The whole-script rows (10).


def test_the_script_is_point_one():
    text = rounds.SCRIPT.format(module="ferropool", method="spawn")
    assert "import ferropool as mp" in text
    assert "mp.get_context('spawn').Pool(2) as p" in text
    assert rounds.SCRIPT_EXPECTED == "328350"
    assert {r.key for r in rows(quick()) if r.label == "10"} <= {
        "script_fork",
        "script_spawn",
        "script_forkserver",
    }


@pytest.mark.timeout(120)
def test_the_script_row_runs_and_checks_the_sum():
    script_row = row("script_fork")
    rr = measure_row(script_row, [*IMPLS, "loky"], quick(repeats=2))
    for impl in IMPLS:
        assert rr.results[impl].error is None
        assert len(rr.results[impl].times) == 2
    assert rr.results["loky"].error.startswith("n/a")
    case = rounds.ScriptCase(script_row, "stdlib", quick())
    case.open()
    try:
        with open(case.path) as f:
            assert "import multiprocessing as mp" in f.read()
    finally:
        case.close()


@pytest.mark.timeout(120)
def test_a_script_printing_something_else_is_a_wrong_result(monkeypatch):
    monkeypatch.setattr(rounds, "SCRIPT_EXPECTED", "42")
    rr = measure_row(row("script_fork"), ["ferropool"], quick())
    error = rr.results["ferropool"].error
    assert error is not None and error.startswith("wrong result")
    assert "328350" in error


def test_full_runs_take_at_least_five_rounds_and_scripts_ten():
    with pytest.raises(ValueError):
        Config.make(quick=False, repeats=3)
    assert Config.make().repeats == 5
    assert Config.make(quick=True).repeats == 1
    assert row("script_spawn").rounds(Config.make()) == 10
    assert row("apply_round_trip").rounds(Config.make()) == 5
    with pytest.raises(SystemExit):
        cli.main(["--repeats", "2", "--workloads", "1"])


# ---------------------------------------------------------------------------
# Results: statistics, targets, JSON.


def _synthetic() -> BenchResults:
    r1 = row("apply_round_trip")
    t = r1.target
    assert t is not None
    # Quiet: a median ratio exactly at the row's target (met).
    quiet = RowResult(
        r1,
        {
            "ferropool": Measurement([5 * t, 15 * t, 10 * t]),
            "stdlib": Measurement([10.0, 10.0, 10.0]),
        },
    )
    loaded = RowResult(
        r1,
        {"ferropool": Measurement([1.0, 12.0, 4.0]), "stdlib": Measurement([10.0, 10.0, 10.0])},
        load=2,
    )
    r5 = row("payload_bytes")
    payload = RowResult(
        r5,
        {
            "ferropool": Measurement([3.0, 3.0], cold=[4.0, 6.0]),
            "stdlib": Measurement([10.0, 10.0], cold=[10.0, 10.0]),
        },
    )
    return BenchResults(quiet=[quiet, payload], loaded=[loaded])


def test_statistics_and_targets():
    results = _synthetic()
    quiet, payload = results.quiet
    loaded = results.loaded[0]
    assert quiet.ratio == pytest.approx(quiet.row.target)  # median 10 t / median 10
    assert quiet.met is True  # at the target
    assert loaded.ratio == pytest.approx(0.4)
    assert loaded.worst_round_ratio == pytest.approx(1.2)
    assert {c.name: c.met for c in loaded.checks()} == {
        "loaded worst round": False,
        "loaded median": True,
    }
    assert payload.cold_ratio == pytest.approx(0.5)
    assert {c.name: c.met for c in payload.checks()} == {"ratio": True, "cold": False}
    phases = results.rows()
    assert [p.row.key for p in phases] == ["apply_round_trip", "payload_bytes"]
    assert phases[0].met is False
    assert "loaded worst round 1.20 > 1.00" in summary_line(results)


def test_json_round_trip():
    results = _synthetic()
    meta = {"implementations": IMPLS, "repeats": 3, "processes": 2, "start_method": "fork"}
    data = json.loads(json.dumps(to_json(results, meta)))
    first = data["rows"][0]
    target = first["target"]
    assert first["quiet"]["results"]["ferropool"]["median"] == pytest.approx(10 * target)
    assert first["quiet"]["results"]["ferropool"]["min"] == pytest.approx(5 * target)
    assert first["loaded"]["worst_round_ratio"] == pytest.approx(1.2)
    assert first["missed"] == ["loaded worst round"]
    assert data["rows"][1]["quiet"]["results"]["ferropool"]["cold"]["times"] == [4.0, 6.0]
    again = from_json(data)
    assert report_lines(again, meta) == report_lines(results, meta)
    assert to_json(again, meta) == to_json(results, meta)


def test_the_published_results_read_back_unchanged():
    """docs/bench-results.json (the README's run) reads back and writes out
    as it is, and its rows hold exactly the suite's saved fields: a row's
    behaviour stays out of the JSON."""
    with open(TESTS.parent / "docs" / "bench-results.json") as f:
        data = json.load(f)
    assert to_json(from_json(data), data["meta"]) == data
    saved = set(rows(quick())[0].saved())
    assert {k for k in data["rows"][0] if k not in ("met", "missed", "quiet", "loaded")} == saved
    read_back = from_json(data).quiet[0].row
    assert read_back.measure is None and read_back.work is None
    with pytest.raises(ValueError, match="not run"):
        read_back.round_case("ferropool", quick())


def test_every_row_is_measured_or_derived():
    for r in rows(quick()):
        assert (r.measure is None) != (r.derive is None), r.key
    chosen = select_rows(rows(quick()), "cpu_efficiency")
    assert [r.key for r in chosen] == ["cpu_bound", "cpu_efficiency"]


def test_the_demo_and_the_bench_burn_alike():
    """The demo's task functions (installed) and the bench's (not: its
    stdlib workers must not import ferropool) are two copies of one."""
    assert _demo_tasks.burn(3) == tasks.burn(3)
    assert _demo_tasks.inc(41) == tasks.inc(41) == 42


def test_from_json_refuses_an_old_file(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"meta": {}, "rows": []}))
    with pytest.raises(SystemExit) as e:
        cli.main(["--from-json", str(old)])
    assert e.value.code == 2
    assert "older version" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_cli_quiet_and_loaded_then_redrawn_from_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--quick", "--workloads", "1", "--impls", "ferropool,stdlib", "--no-progress"]
    assert cli.main([*args, "--also-load", "1", "--json", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| workload"))
    assert "| loaded | worst |" in header
    data = json.loads(out.read_text())
    assert data["meta"]["also_load"] == 1
    (only,) = data["rows"]
    assert only["quiet"]["load"] == 0 and only["loaded"]["load"] == 1
    assert len(only["loaded"]["round_ratios"]) == 1
    assert cli.main(["--from-json", str(out), "--markdown"]) == 0
    again = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert table == [line for line in again.splitlines() if line.startswith("|")]


@pytest.mark.timeout(120)
def test_run_all_loaded_only():
    results = run_all(quick(), IMPLS, [row("apply_round_trip", n=20)], load=1)
    assert results.quiet == [] and len(results.loaded) == 1
    assert results.load == 1
    assert results.loaded[0].worst_round_ratio is not None


# ---------------------------------------------------------------------------
# Rows 11: ferropool.dask against the local engine (no target).


def test_the_dask_rows_run_on_the_two_pools_and_no_other_row_on_dask():
    everyone = ["ferropool", "stdlib", "loky", "ferropool-dask"]
    remote = [r for r in rows(quick()) if r.kind == "remote"]
    assert [r.key for r in remote] == ["dask_cpu_bound", "dask_round_trip"]
    assert [r.key for r in select_rows(rows(quick()), "11")] == [r.key for r in remote]
    for r in rows(quick()):
        names = r.case_names(everyone)
        if r.kind == "remote":
            assert names == ["ferropool", "ferropool-dask"]
            assert r.target is None and r.ratio_of == ("ferropool-dask", "ferropool")
        else:
            assert "ferropool-dask" not in names


def test_the_dask_rows_are_na_without_distributed(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec

    def without_distributed(name, *args):
        return None if name == "distributed" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_distributed)
    r = row("dask_round_trip", n=5)
    with RowRounds(r, r.case_names(["ferropool", "ferropool-dask"]), quick()) as rounds:
        error = rounds.results["ferropool-dask"].error
    assert error is not None and error.startswith("n/a: distributed is not installed")


def _dask_result() -> RowResult:
    r = row("dask_round_trip", n=100)
    return RowResult(
        r,
        {
            "ferropool": Measurement([0.002, 0.003], setup=[0.01]),
            "ferropool-dask": Measurement([0.5, 0.6], setup=[1.5]),
        },
    )


def test_a_dask_row_has_its_own_table_ratio_and_no_target():
    dask = _dask_result()
    assert dask.ratio == pytest.approx(0.55 / 0.0025)
    assert dask.met is None and dask.checks() == []
    loaded = dataclasses.replace(dask, load=2)
    assert loaded.checks() == []  # not even the loaded worst round's bound
    main = _synthetic().quiet[0]
    meta = {
        "implementations": ["ferropool", "stdlib", "ferropool-dask"],
        "repeats": 2,
        "processes": 2,
        "start_method": "fork",
    }
    lines = report_lines(BenchResults(quiet=[main, dask]), meta, markdown=True)
    headers = [line for line in lines if line.startswith("| workload")]
    assert headers == [
        "| workload | ferropool | stdlib | ratio | target | met |",
        "| workload | ferropool | ferropool-dask | ferropool-dask / ferropool | target | met |",
    ]
    dask_line = next(line for line in lines if line.startswith("| 11b"))
    assert dask_line.endswith(f"| {dask.ratio:.2f} | - | - |")
    per_task = next(line for line in lines if line.startswith("11b: per task"))
    assert "ferropool-dask 5.50 ms" in per_task and "ferropool-dask 1.50 s" in per_task
    assert summary_line(BenchResults(quiet=[dask])).startswith("no targets")
    # Its comparison and set-up survive the JSON; the main rows' JSON is as before.
    data = json.loads(json.dumps(to_json(BenchResults(quiet=[main, dask]), meta)))
    assert "ratio_of" not in data["rows"][0] and "setup" not in json.dumps(data["rows"][0])
    assert data["rows"][1]["ratio_of"] == ["ferropool-dask", "ferropool"]
    again = from_json(data)
    assert again.quiet[1].ratio == pytest.approx(dask.ratio)
    assert report_lines(again, meta) == report_lines(BenchResults(quiet=[main, dask]), meta)


@pytest.mark.dask  # imports distributed here: see conftest's pytest_collection_modifyitems
@pytest.mark.timeout(180)
def test_the_dask_round_trip_row_runs_on_a_local_cluster():
    pytest.importorskip("distributed")
    r = row("dask_round_trip", n=5)
    rr = measure_row(r, ["ferropool", "stdlib", "ferropool-dask"], quick(repeats=2))
    assert set(rr.results) == {"ferropool", "ferropool-dask"}
    for m in rr.results.values():
        assert m.error is None and len(m.times) == 2
        assert len(m.setup) == 1 and m.setup[0] > 0
    assert rr.ratio is not None and rr.met is None
