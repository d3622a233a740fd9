"""The runner: every selected row, in interleaved rounds, quiet and/or loaded.

``RowRounds`` is the one way a row is measured: it makes each
implementation's round case (``Row.round_case``: each in a fresh
interpreter or process of its own), opens it (untimed), runs the rounds
interleaved across the implementations, one round of each in turn, and
keeps every round's time in a ``Measurement``. ``measure_row`` runs all of
a row's rounds for the command line; the pytest-benchmark harness
(benches/test_bench.py) runs them one ``run_round`` at a time, one
implementation per test. ``run_all`` measures every selected row (or
derives it from those before: ``Row.derive``) and returns the ``BenchResults``: the quiet
phase, the loaded phase (N CPU-bound processes beside every row), or both.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence

from .adapters import PEERS, NotAvailable
from .results import BenchResults, Measurement, RowResult
from .rounds import RoundCase
from .server import ServerError, WrongResult
from .workloads import Config, Row

if TYPE_CHECKING:
    from .report import Progress


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


class RowRounds:
    """The rounds of ``row`` on ``names`` (implementations, "serial"), one
    ``run_round`` at a time: each round runs every case still going once, in
    turn, so that a burst of outside load lands on all of them and round i
    of each pairs up with round i of the others; the order reverses every
    other round, so no implementation always runs right after the same
    other one. A case is opened before its first round (untimed; ``open``
    opens them all at once) and closed after its last. A failure becomes
    its Measurement's error (n/a, wrong result, error), and that case runs
    no more rounds; so does a peer once it has spent ``cfg.peer_budget_s``.
    A context manager: closes every case at the end, kills them at once if
    interrupted."""

    def __init__(
        self,
        row: Row,
        names: Sequence[str],
        cfg: Config,
        progress: Optional[Progress] = None,
        load: int = 0,
    ) -> None:
        self.row, self.cfg, self.progress, self.load = row, cfg, progress, load
        self.results = {name: Measurement() for name in names}
        self.cases: Dict[str, RoundCase] = {}
        for name in names:
            try:
                self.cases[name] = row.round_case(name, cfg)
            except NotAvailable as e:
                self.results[name].error = f"n/a: {e}"
        self.rounds = row.rounds(cfg)
        self.done = 0  # rounds run
        self._spent = dict.fromkeys(names, 0.0)
        self._started: List[str] = []  # opened (or tried), in order
        self._open: List[str] = []  # opened and not yet closed

    def open(self) -> None:
        """Opens every case not yet opened (untimed)."""
        for name in list(self.cases):
            self._open_case(name)

    def run_round(self) -> None:
        """Runs the next round of every case still going."""
        rnd, self.done = self.done, self.done + 1
        order = list(self.cases) if rnd % 2 == 0 else list(reversed(self.cases))
        for name in order:
            m = self.results[name]
            if m.error is not None or name not in self.cases:
                continue
            if self.progress:
                loaded = f" · {self.load} busy" if self.load else ""
                where = f"{name} · round {rnd + 1}/{self.rounds}"
                self.progress.step(f"{self.row.label} {self.row.title}{loaded} · {where}")
            if self._open_case(name):
                try:
                    t0 = time.perf_counter()
                    result = self.cases[name].round()
                    self._spent[name] += time.perf_counter() - t0
                    m.times.append(result.seconds)
                    if result.cold is not None:
                        m.cold.append(result.cold)
                except Exception as e:
                    m.error = _error_text(e)
            # A peer stops once it has spent its budget (ferropool and the
            # stdlib always get every round: their ratio is the point).
            over_budget = name in PEERS and self._spent[name] > self.cfg.peer_budget_s
            if m.error is not None or over_budget or rnd >= self.rounds - 1:
                self._finish(name)
                if over_budget:
                    del self.cases[name]

    def _open_case(self, name: str) -> bool:
        """Opens the case the first time; whether it is open and going."""
        if name not in self._started:
            self._started.append(name)
            self._open.append(name)
            case = self.cases[name]
            try:
                case.open()
            except Exception as e:
                self.results[name].error = _error_text(e)
            if case.setup is not None:
                self.results[name].setup.append(case.setup)
        return self.results[name].error is None and name in self._open

    def _finish(self, name: str) -> None:
        """Closes a case that runs no more rounds (frees its workers now)."""
        if name not in self._open:
            return
        self._open.remove(name)
        try:
            self.cases[name].close()
        except Exception as e:
            if self.results[name].error is None:
                self.results[name].error = f"error closing: {_error_text(e)}"

    def close(self) -> None:
        for name in reversed(list(self._open)):
            self._finish(name)

    def abort(self) -> None:
        """Ends every case now rather than wait for the rounds they run."""
        for name in reversed(self._open):
            self.cases[name].abort()
        self._open.clear()

    def __enter__(self) -> RowRounds:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


def measure_row(
    row: Row,
    impls: Sequence[str],
    cfg: Config,
    progress: Optional[Progress] = None,
    load: int = 0,
) -> RowResult:
    """Time ``row`` on each implementation (and the cpu-bound row's serial
    baseline): ``row.rounds(cfg)`` interleaved rounds (``RowRounds``). With
    ``load``, that many CPU-bound processes run throughout (the cases are
    opened under load too)."""
    with cpu_load(load), RowRounds(row, row.case_names(impls), cfg, progress, load) as rounds:
        for _ in range(rounds.rounds):
            rounds.run_round()
    return RowResult(row, rounds.results, load)


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
            if row.derive is None:
                phase.append(measure_row(row, impls, cfg, progress, n))
                continue
            derived = row.derive(row, phase, cfg)
            if derived is not None:
                phase.append(derived)
    if progress:
        progress.done()
    return out


def count_steps(impls: Sequence[str], selected: Sequence[Row], cfg: Config, phases: int) -> int:
    """Rounds to run in all (the progress bar's total; peers that stop early
    make it an upper bound)."""
    n = 0
    for row in selected:
        if row.derive is not None:
            continue
        for name in row.case_names(impls):
            try:
                row.round_case(name, cfg)
            except NotAvailable:
                continue
            n += row.rounds(cfg) * phases
    return n
