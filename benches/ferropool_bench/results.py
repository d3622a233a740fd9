"""Results: every round's time per implementation (``Measurement``), a row's
ratios and targets (``RowResult``), a whole run's quiet and loaded phases
(``BenchResults``), and their JSON form.

A row's figure per implementation is the median of its rounds (min and max
kept beside it); the ratio is ferropool's median / the stdlib's (or what
else the row compares: ``Row.ratio_of``). The rounds
of one row are interleaved across implementations, so round i of ferropool
and round i of the stdlib ran side by side in time: their ratio is the
row's per-round ratio, whose worst is what the loaded phase's target bounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .workloads import LOADED_WORST_ROUND_TARGET, Config, Row

# The JSON's layout: from_json reads this one only.
JSON_FORMAT = 2


@dataclass
class Measurement:
    """One implementation on one row: a time per round, in round order (a
    peer past its budget stops early, so its list may be shorter)."""

    times: List[float] = field(default_factory=list)
    error: Optional[str] = None  # "n/a: ...", "error: ...", "wrong result"
    # Payload rows: each round's first payload call in its fresh interpreter.
    cold: List[float] = field(default_factory=list)
    # The rows timed in one case server: the seconds its pool took to be
    # made and warmed up, untimed by the rounds (for ferropool-dask, its
    # LocalCluster started).
    setup: List[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.times) and self.error is None

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.times) if self.ok else None

    @property
    def low(self) -> Optional[float]:
        return min(self.times) if self.ok else None

    @property
    def high(self) -> Optional[float]:
        return max(self.times) if self.ok else None

    @property
    def cold_median(self) -> Optional[float]:
        return statistics.median(self.cold) if self.cold and self.error is None else None

    def to_json(self) -> Dict[str, Any]:
        cold = None
        if self.cold:
            cold = {
                "median": statistics.median(self.cold),
                "min": min(self.cold),
                "max": max(self.cold),
                "times": self.cold,
            }
        out: Dict[str, Any] = {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "times": self.times,
            "cold": cold,
            "error": self.error,
        }
        if self.setup:  # (files of earlier runs have none)
            out["setup"] = self.setup
        return out

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> Measurement:
        cold = (d.get("cold") or {}).get("times") or []
        setup = d.get("setup") or []
        return cls(list(d.get("times") or []), d.get("error"), list(cold), list(setup))


class Check(NamedTuple):
    """One target of a row: what is compared, its value, the bound, met."""

    name: str
    value: float
    target: float
    met: bool


def _paired(a: List[float], b: List[float]) -> List[float]:
    return [x / y for x, y in zip(a, b) if y]


@dataclass
class RowResult:
    row: Row
    results: Dict[str, Measurement]
    # CPU-bound processes that ran beside this row (0: a quiet machine).
    load: int = 0

    def value(self, impl: str) -> Optional[float]:
        m = self.results.get(impl)
        return m.median if m else None

    def _pair(self) -> Optional[Tuple[Measurement, Measurement]]:
        if self.row.kind == "efficiency":
            return None
        first, second = (self.results.get(impl) for impl in self.row.ratio_of)
        if first is None or second is None or not first.ok or not second.ok:
            return None
        return first, second

    @property
    def ratio(self) -> Optional[float]:
        pair = self._pair()
        if pair is None or not pair[1].median:
            return None
        return (pair[0].median or 0.0) / (pair[1].median or 1.0)

    @property
    def round_ratios(self) -> List[float]:
        """ferropool / stdlib (``Row.ratio_of``) per round, rounds paired by
        their interleaving."""
        pair = self._pair()
        return _paired(pair[0].times, pair[1].times) if pair else []

    @property
    def worst_round_ratio(self) -> Optional[float]:
        return max(self.round_ratios, default=None)

    @property
    def cold_ratio(self) -> Optional[float]:
        pair = self._pair()
        if pair is None or not pair[1].cold_median:
            return None
        return (pair[0].cold_median or 0.0) / (pair[1].cold_median or 1.0)

    @property
    def cold_round_ratios(self) -> List[float]:
        pair = self._pair()
        return _paired(pair[0].cold, pair[1].cold) if pair else []

    def checks(self) -> List[Check]:
        """The targets that apply to this phase and could be evaluated.
        Quiet: the median ratio (efficiency: ferropool's share, a minimum)
        and the cold ratio; loaded: the worst round and, where the row has
        one, the median. A row without a target has none (reported only)."""
        row = self.row
        out: List[Check] = []
        if row.target is None:
            return out
        if row.kind == "efficiency":
            v = self.value("ferropool")
            if self.load == 0 and row.target is not None and v is not None:
                out.append(Check("efficiency", v, row.target, v >= row.target))
            return out
        ratio, cold, worst = self.ratio, self.cold_ratio, self.worst_round_ratio
        if self.load == 0:
            if row.target is not None and ratio is not None:
                out.append(Check("ratio", ratio, row.target, ratio <= row.target))
            if row.cold_target is not None and cold is not None:
                out.append(Check("cold", cold, row.cold_target, cold <= row.cold_target))
        else:
            if worst is not None:
                bound = LOADED_WORST_ROUND_TARGET
                out.append(Check("loaded worst round", worst, bound, worst <= bound))
            if row.loaded_target is not None and ratio is not None:
                bound = row.loaded_target
                out.append(Check("loaded median", ratio, bound, ratio <= bound))
        return out

    @property
    def met(self) -> Optional[bool]:
        checks = self.checks()
        return all(c.met for c in checks) if checks else None

    def to_json(self) -> Dict[str, Any]:
        return {
            "load": self.load,
            "ratio": self.ratio,
            "round_ratios": self.round_ratios,
            "worst_round_ratio": self.worst_round_ratio,
            "cold_ratio": self.cold_ratio,
            "cold_round_ratios": self.cold_round_ratios,
            "met": self.met,
            "results": {impl: m.to_json() for impl, m in self.results.items()},
        }


def efficiency_row(row: Row, cpu: RowResult, serial: Measurement, processes: int) -> RowResult:
    """serial time / (workers x pool time), per implementation (medians)."""
    out: Dict[str, Measurement] = {}
    for impl, m in cpu.results.items():
        if impl == "serial":
            continue
        if m.median and serial.median is not None:
            out[impl] = Measurement([serial.median / (processes * m.median)])
        else:
            out[impl] = Measurement([], m.error or "n/a")
    return RowResult(row, out, cpu.load)


def efficiency(row: Row, before: Sequence[RowResult], cfg: Config) -> Optional[RowResult]:
    """The efficiency row's ``derive``: from the row measured before it with
    a serial baseline (the cpu-bound row); None if that did not run."""
    cpu = next((r for r in reversed(before) if "serial" in r.results), None)
    if cpu is None:
        return None
    return efficiency_row(row, cpu, cpu.results["serial"], cfg.processes)


class RowPhases(NamedTuple):
    """One row of the report: its quiet and its loaded result (either may be
    missing: a loaded-only run has no quiet one)."""

    row: Row
    quiet: Optional[RowResult]
    loaded: Optional[RowResult]

    @property
    def main(self) -> RowResult:
        """The result whose times the report shows: quiet where there is one."""
        result = self.quiet or self.loaded
        assert result is not None
        return result

    def checks(self) -> List[Check]:
        return [c for rr in (self.quiet, self.loaded) if rr is not None for c in rr.checks()]

    @property
    def met(self) -> Optional[bool]:
        checks = self.checks()
        return all(c.met for c in checks) if checks else None


@dataclass
class BenchResults:
    """A run: every row quiet, with N CPU-bound processes beside it, or both."""

    quiet: List[RowResult] = field(default_factory=list)
    loaded: List[RowResult] = field(default_factory=list)

    @property
    def load(self) -> int:
        return self.loaded[0].load if self.loaded else 0

    def rows(self) -> List[RowPhases]:
        quiet = {rr.row.key: rr for rr in self.quiet}
        loaded = {rr.row.key: rr for rr in self.loaded}
        order = [rr.row for rr in self.quiet] + [
            rr.row for rr in self.loaded if rr.row.key not in quiet
        ]
        return [RowPhases(row, quiet.get(row.key), loaded.get(row.key)) for row in order]

    def all(self) -> Iterator[RowResult]:
        yield from self.quiet
        yield from self.loaded

    @property
    def has_cold(self) -> bool:
        return any(rr.cold_ratio is not None for rr in self.quiet)


# ---------------------------------------------------------------------------
# JSON.


def to_json(results: BenchResults, meta: Dict[str, Any]) -> Dict[str, Any]:
    rows = []
    for phases in results.rows():
        d: Dict[str, Any] = phases.row.saved()
        d["met"] = phases.met
        d["missed"] = [c.name for c in phases.checks() if not c.met]
        d["quiet"] = phases.quiet.to_json() if phases.quiet else None
        d["loaded"] = phases.loaded.to_json() if phases.loaded else None
        rows.append(d)
    return {"format": JSON_FORMAT, "meta": meta, "rows": rows}


def from_json(data: Dict[str, Any]) -> BenchResults:
    """The results of ``to_json``; ValueError for another layout (the files
    of earlier versions: run the benchmark again)."""
    if data.get("format") != JSON_FORMAT:
        raise ValueError(
            f"not a ferropool bench results file of format {JSON_FORMAT} (found "
            f"{data.get('format', 'none')}): written by an older version? Run the "
            "benchmark again to write one."
        )
    out = BenchResults()
    for d in data["rows"]:
        row = Row.from_saved(d)
        for phase, dest in (("quiet", out.quiet), ("loaded", out.loaded)):
            p = d.get(phase)
            if p:
                res = {impl: Measurement.from_json(m) for impl, m in p["results"].items()}
                dest.append(RowResult(row, res, int(p.get("load", 0))))
    return out
