"""The runner: every selected row, in interleaved rounds, quiet and/or loaded.

``measure_row`` opens each implementation's round case (``rounds``: each
implementation in a fresh interpreter or process of its own, untimed), then
runs the rounds interleaved across the implementations, one round of each in
turn, and keeps every round's time in a ``Measurement``. ``run_all`` does
that for every selected row and returns the ``BenchResults``: the quiet
phase, the loaded phase (N CPU-bound processes beside every row), or both.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence

from .adapters import PEERS, NotAvailable
from .cases import make_case
from .results import BenchResults, Measurement, RowResult, efficiency_row
from .rounds import RoundCase, make_round_case, round_case_names
from .server import ServerError, WrongResult
from .workloads import Config, Row

if TYPE_CHECKING:
    from .report import Progress

# Re-exported: the pytest-benchmark harness (benches/) builds on these.
__all__ = [
    "BenchResults",
    "Measurement",
    "RowResult",
    "count_steps",
    "cpu_load",
    "efficiency_row",
    "make_case",
    "measure_row",
    "run_all",
]


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """`processes` CPU-bound processes (busy loops) running while the block
    runs: the benchmark then measures a busy machine, where waits that spin
    take CPU from the processes they wait for."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _error_text(e: BaseException) -> str:
    if isinstance(e, NotAvailable):
        return f"n/a: {e}"
    if isinstance(e, WrongResult):
        detail = str(e)
        return "wrong result" + (f": {detail}" if detail and detail != "wrong result" else "")
    if isinstance(e, ServerError):
        return f"error: {e}"
    return f"error: {type(e).__name__}: {e}"


def _available_cases(row: Row, impls: Sequence[str], cfg: Config) -> Dict[str, RoundCase]:
    cases: Dict[str, RoundCase] = {}
    for name in round_case_names(row, list(impls)):
        try:
            cases[name] = make_round_case(row, name, cfg)
        except NotAvailable:
            continue
    return cases


def measure_row(
    row: Row,
    impls: Sequence[str],
    cfg: Config,
    progress: Optional[Progress] = None,
    load: int = 0,
) -> RowResult:
    """Time ``row`` on each implementation (and the cpu-bound row's serial
    baseline): ``cfg.rounds(row)`` rounds, each running every implementation
    once in turn, so that a burst of outside load lands on all of them, and
    round i of each pairs up with round i of the others. The order reverses
    every other round: no implementation always runs right after the same
    other one. With ``load``, that many CPU-bound processes run throughout
    (the cases are opened under load too)."""
    names = round_case_names(row, list(impls))
    out = {name: Measurement() for name in names}
    cases: Dict[str, RoundCase] = {}
    for name in names:
        try:
            cases[name] = make_round_case(row, name, cfg)
        except NotAvailable as e:
            out[name].error = f"n/a: {e}"
    rounds = cfg.rounds(row)
    spent = dict.fromkeys(names, 0.0)
    opened: List[str] = []

    def finish(name: str) -> None:
        """Closes a case that runs no more rounds (frees its workers now)."""
        if name not in opened:
            return
        opened.remove(name)
        try:
            cases[name].close()
        except Exception as e:
            if out[name].error is None:
                out[name].error = f"error closing: {_error_text(e)}"

    with cpu_load(load):
        try:
            for rnd in range(rounds):
                order = list(cases) if rnd % 2 == 0 else list(reversed(cases))
                for name in order:
                    m = out[name]
                    if m.error is not None or name not in cases:
                        continue
                    if progress:
                        loaded = f" · {load} busy" if load else ""
                        where = f"{name} · round {rnd + 1}/{rounds}"
                        progress.step(f"{row.label} {row.title}{loaded} · {where}")
                    try:
                        if rnd == 0:
                            opened.append(name)
                            cases[name].open()
                        t0 = time.perf_counter()
                        result = cases[name].round()
                        spent[name] += time.perf_counter() - t0
                        m.times.append(result.seconds)
                        if result.cold is not None:
                            m.cold.append(result.cold)
                    except Exception as e:
                        m.error = _error_text(e)
                    # A peer stops once it has spent its budget (ferropool and
                    # the stdlib always get every round: their ratio is the point).
                    over_budget = name in PEERS and spent[name] > cfg.peer_budget_s
                    if m.error is not None or over_budget or rnd == rounds - 1:
                        finish(name)
                        if over_budget:
                            del cases[name]
        except BaseException:
            # Interrupted (Ctrl-C): end every server now rather than wait
            # for the rounds they are running.
            for name in reversed(opened):
                cases[name].abort()
            opened.clear()
            raise
        finally:
            for name in reversed(list(opened)):
                finish(name)
    return RowResult(row, out, load)


def run_all(
    cfg: Config,
    impls: Sequence[str],
    selected: Sequence[Row],
    progress: Optional[Progress] = None,
    load: int = 0,
    also_load: int = 0,
) -> BenchResults:
    """Every selected row on every implementation: quiet (``load`` 0), with
    ``load`` CPU-bound processes beside it, or (``also_load``) quiet and
    then again with ``also_load`` processes, row by row, so that a row's two
    phases run minutes apart at most (a shared machine's neighbours change
    over a long run; the two figures of a row should see the same ones)."""
    if load and also_load:
        raise ValueError("load and also_load exclude each other")
    loads = [0, also_load] if also_load else [load]
    out = BenchResults()
    for row in selected:
        for n in loads:
            phase = out.loaded if n else out.quiet
            if row.kind == "efficiency":
                cpu = next((r for r in phase if r.row.key == "cpu_bound"), None)
                if cpu is not None and "serial" in cpu.results:
                    phase.append(efficiency_row(row, cpu, cpu.results["serial"], cfg.processes))
                continue
            phase.append(measure_row(row, impls, cfg, progress, n))
    if progress:
        progress.done()
    return out


def count_steps(impls: Sequence[str], selected: Sequence[Row], cfg: Config, phases: int) -> int:
    """Rounds to run in all (the progress bar's total; peers that stop early
    make it an upper bound)."""
    n = 0
    for row in selected:
        if row.kind != "efficiency":
            n += len(_available_cases(row, impls, cfg)) * cfg.rounds(row) * phases
    return n
