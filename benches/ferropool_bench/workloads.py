"""What a row is: its data (``Row``), how it is measured, and what a case
server's pool runs for it (the ``Workload`` classes); the run's ``Config``.

A row carries its behaviour with it: ``Row.measure``, the round case that
times it (``rounds``), ``Row.work``, what the pool runs (a ``Workload``),
and ``Row.derive`` for a row computed from others (efficiency). The table
of rows is ``suite.rows``: adding a row is one entry there (and a
``Workload`` class if it runs something new). The task functions are in
``tasks``, a module that imports nothing, which workers of every start
method import by name.
"""

from __future__ import annotations

import importlib
import multiprocessing
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from .adapters import OPT_IN, NotAvailable, check_available
from .tasks import burn, identity, inc

if TYPE_CHECKING:
    from .results import RowResult
    from .rounds import RoundCase

MIB = 1 << 20
START_METHODS = ["fork", "spawn", "forkserver"]

# Rounds per row in a full run: at least this many, the median reported
# (--quick runs 1 unless --repeats says more).
MIN_ROUNDS = 5
# The whole-script rows (10) are cheap: they run at least this many rounds.
SCRIPT_ROUNDS = 10
# Under load, no round of any row may be slower than the stdlib's (point 2 of
# the performance issue): the worst per-round ratio's target.
LOADED_WORST_ROUND_TARGET = 1.0


@dataclass
class Config:
    quick: bool = False
    processes: int = 2
    start_method: str = field(default_factory=multiprocessing.get_start_method)
    repeats: int = MIN_ROUNDS
    # A peer's case stops repeating once it has spent this long (ferropool
    # and the stdlib always get every round: their ratio is the point).
    peer_budget_s: float = 4.0

    @classmethod
    def make(
        cls,
        quick: bool = False,
        processes: int = 2,
        start_method: Optional[str] = None,
        repeats: Optional[int] = None,
    ) -> Config:
        if repeats is not None and repeats < (1 if quick else MIN_ROUNDS):
            raise ValueError(
                f"rounds: at least {MIN_ROUNDS} in a full run (fewer only with quick), "
                f"not {repeats}"
            )
        return cls(
            quick=quick,
            processes=processes,
            start_method=start_method or multiprocessing.get_start_method(),
            repeats=repeats if repeats is not None else (1 if quick else MIN_ROUNDS),
        )

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @property
    def script_rounds(self) -> int:
        """Rounds of the whole-script rows (10): cheap, so more of them."""
        return self.repeats if self.quick else max(self.repeats, SCRIPT_ROUNDS)


# A field of Row that the results' JSON leaves out: behaviour, not data.
_NOT_SAVED = {"saved": False}
# A field of Row that the JSON holds only where it differs from its default
# (the rows of earlier results files read back and write out unchanged).
_SAVED_IF_SET = {"saved": "if set"}
# What a row's ratio divides, unless it says otherwise: ferropool's median
# by the stdlib's.
FERROPOOL_VS_STDLIB = ("ferropool", "stdlib")


@dataclass(frozen=True)
class Row:
    """One row of the report. Its data is saved with the results (what the
    report shows, the targets); its behaviour is not: a row read back from
    JSON is reported, never run."""

    key: str
    label: str  # "1", "5a", ...: what --workloads selects
    title: str
    # pool | executor | startup | script | cpu | efficiency | remote: how the report shows it
    kind: str
    # The median ratio's bound (efficiency: the minimum); None: a row without
    # targets, reported only (no check in any phase).
    target: Optional[float]
    n: int = 0
    method: str = ""  # start-up and whole-script rows: the start method they time
    first: bool = True  # start-up rows: the first pool of an interpreter, or the next ones
    # Pools of this many workers instead of --processes (oversubscribed rows).
    workers: int = 0
    # The row whose workload this one runs, when it is another (9a, 9b: 1, 2).
    workload: str = ""
    # Payload rows: the target of the first payload call in a fresh
    # interpreter (the "cold" ratio), beside ``target`` for the warm one.
    cold_target: Optional[float] = None
    # The median ratio's target under load, where the issue gives one (every
    # row also has LOADED_WORST_ROUND_TARGET for its worst round).
    loaded_target: Optional[float] = None
    # The ratio: the first implementation's median / the second's.
    ratio_of: Tuple[str, str] = field(default=FERROPOOL_VS_STDLIB, metadata=_SAVED_IF_SET)
    # The implementations the row runs on (those of them compared in the
    # run); empty: every one compared but the opt-in ones (adapters.OPT_IN).
    impls: Tuple[str, ...] = field(default=(), metadata=_SAVED_IF_SET)
    # How a round is timed: the round case (rounds), made per implementation.
    measure: Optional[Type[RoundCase]] = field(
        default=None, compare=False, repr=False, metadata=_NOT_SAVED
    )
    # What a case server's pool runs, for the rows timed in one.
    work: Optional[Workload] = field(default=None, compare=False, repr=False, metadata=_NOT_SAVED)
    # A row computed from the rows measured before it in the same phase
    # (efficiency, from the cpu-bound row); such a row runs nothing.
    derive: Optional[Callable[[Row, Sequence[RowResult], Config], Optional[RowResult]]] = field(
        default=None, compare=False, repr=False, metadata=_NOT_SAVED
    )

    def saved(self) -> Dict[str, Any]:
        """The row's data, as the results' JSON holds it."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata == _NOT_SAVED or (f.metadata == _SAVED_IF_SET and value == f.default):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_saved(cls, d: Dict[str, Any]) -> Row:
        names = {f.name for f in fields(cls) if f.metadata != _NOT_SAVED}
        # JSON has lists where the row has tuples (ratio_of, impls).
        data: Dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names
        }
        return cls(**data)

    @property
    def compares_to_stdlib(self) -> bool:
        """Whether the ratio is ferropool / stdlib (the main table's rows)."""
        return self.ratio_of == FERROPOOL_VS_STDLIB

    def round_case(self, impl: str, cfg: Config) -> RoundCase:
        """This row's round case on ``impl``; NotAvailable where ``impl`` has
        no equivalent of it."""
        if self.measure is None:
            raise ValueError(f"row {self.key} is not run: it is derived or was read back")
        return self.measure(self, impl, cfg)

    def rounds(self, cfg: Config) -> int:
        """How many interleaved rounds the row runs."""
        return self.measure.rounds(cfg) if self.measure is not None else 0

    def case_names(self, impls: Sequence[str]) -> List[str]:
        """What the row runs on: the implementations, after the serial
        baseline where its workload has one (efficiency is derived from it)."""
        if self.impls:
            names = [i for i in impls if i in self.impls]
        else:
            names = [i for i in impls if i not in OPT_IN]
        baseline = self.work is not None and self.work.serial_baseline
        return ["serial", *names] if baseline else names


# ---------------------------------------------------------------------------
# Workloads: what a case server's pool runs for a row (cases.Case drives them).


class Workload:
    """A row's work in a pool or executor: ``data`` makes its input,
    ``prepare`` does what else must come before the clock, ``warm`` runs
    every code path once (all untimed), ``run`` is the timed part, ``check``
    looks at its result. Instances are small and picklable: a case server
    receives its row's."""

    executor = False  # opens an executor (submit/map) instead of a pool
    serial_baseline = False  # the row also times the work serially

    def available(self, impl: str) -> None:
        """Raises NotAvailable where ``impl`` has no equivalent of it."""
        check_available(impl)
        if self.executor and impl in ("billiard", "mpire"):
            raise NotAvailable(f"{impl}: no concurrent.futures executor")

    def data(self, n: int) -> Any:
        # The map rows are defined over a range, as the issue states them
        # (a list would skip the work of making the input's ints).
        return range(n)

    def prepare(self, n: int) -> None:
        pass

    def warm(self, api: Any, items: List[int]) -> None:
        api.map(inc, items, 1)

    def run(self, api: Any, data: Any) -> Any:
        raise NotImplementedError

    def run_serial(self, data: Any) -> Any:
        """The work in this process, where ``serial_baseline``."""
        raise NotImplementedError

    def check(self, result: Any, n: int) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class RoundTrips(Workload):
    """``apply_async(inc, (i,)).get()`` for each i in turn (an executor:
    ``submit(inc, i).result()``)."""

    executor: bool = False

    def data(self, n: int) -> Any:
        return list(range(n))

    def warm(self, api: Any, items: List[int]) -> None:
        for i in items:
            api.apply(inc, i)

    def run(self, api: Any, data: Any) -> Any:
        total = 0
        for i in data:
            total += api.apply(inc, i)
        return total

    def check(self, result: Any, n: int) -> bool:
        return bool(result == n * (n + 1) // 2)


@dataclass(frozen=True)
class MapInc(Workload):
    """``map(inc, range(n), chunksize)``; None: the Pool's default chunksize
    (an executor gets the Pool's rule too, see adapters)."""

    chunksize: Optional[int] = 1
    executor: bool = False

    def run(self, api: Any, data: Any) -> Any:
        return api.map(inc, data, self.chunksize)

    def check(self, result: Any, n: int) -> bool:
        return list(result) == list(range(1, n + 1))


class ImapUnordered(Workload):
    """``imap_unordered(inc, range(n), 1)`` (executors have none: n/a)."""

    def warm(self, api: Any, items: List[int]) -> None:
        api.imap_unordered(inc, items, 1)

    def run(self, api: Any, data: Any) -> Any:
        return api.imap_unordered(inc, data, 1)

    def check(self, result: Any, n: int) -> bool:
        return sorted(result) == list(range(1, n + 1))


@dataclass(frozen=True)
class Payloads(Workload):
    """``map(identity, n x 8 MiB, chunksize=1)`` of bytes or numpy arrays.
    Warmed up with small tasks only: the first payload call is what the
    payload rows time as "cold"."""

    numpy: bool = False

    def available(self, impl: str) -> None:
        super().available(impl)
        if self.numpy:
            _numpy()

    def data(self, n: int) -> Any:
        if not self.numpy:
            return [bytes(8 * MIB)] * n
        return [_numpy().arange(MIB, dtype="float64")] * n  # 8 MiB

    def run(self, api: Any, data: Any) -> Any:
        return api.map(identity, data, 1)

    def check(self, result: Any, n: int) -> bool:
        if len(result) != n:
            return False
        if self.numpy:
            return all(r.shape == (MIB,) and r[-1] == MIB - 1 for r in result)
        return all(len(r) == 8 * MIB for r in result)


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        raise NotAvailable("numpy is not installed") from None


_serial_cpu: Dict[int, List[str]] = {}


def serial_cpu(n: int) -> List[str]:
    """The cpu-bound workload run in this process (the expected results)."""
    if n not in _serial_cpu:
        _serial_cpu[n] = [burn(i) for i in range(n)]
    return _serial_cpu[n]


@dataclass(frozen=True)
class CpuBound(Workload):
    """``map(burn, range(n), chunksize=1)``: ~15 ms tasks; also timed
    serially (the baseline of the efficiency row) unless told not to."""

    serial_baseline: bool = True

    def data(self, n: int) -> Any:
        return list(range(n))

    def prepare(self, n: int) -> None:
        serial_cpu(n)  # the expected results

    def run(self, api: Any, data: Any) -> Any:
        return api.map(burn, data, 1)

    def run_serial(self, data: Any) -> Any:
        return [burn(i) for i in data]

    def check(self, result: Any, n: int) -> bool:
        return list(result) == serial_cpu(n)
