"""The workloads: the task functions the workers run, and the rows of the report.

The task functions (``inc``, ``identity``, ``burn``) are defined in
``ferropool_bench.tasks``, a module that imports nothing, so that workers of
every start method (spawn and forkserver included) import them by name at
little cost; they are re-exported here. ``rows`` lists the rows of the report
with the sizes of a ``Config``; ``select_rows`` applies ``--workloads``.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from typing import List, Optional

from .tasks import burn, identity, inc

__all__ = [
    "MIB",
    "START_METHODS",
    "Config",
    "Row",
    "burn",
    "identity",
    "inc",
    "rows",
    "select_rows",
]

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


# ---------------------------------------------------------------------------
# Configuration and the list of rows of the report.


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

    def rounds(self, row: Row) -> int:
        """How many interleaved rounds ``row`` runs."""
        return self.script_rounds if row.kind == "script" else self.repeats


@dataclass(frozen=True)
class Row:
    key: str
    label: str  # "1", "5a", ...: what --workloads selects
    title: str
    kind: str  # pool | executor | startup | script | cpu | efficiency
    target: Optional[float]  # median ratio ferropool / stdlib; for efficiency: the minimum
    n: int = 0
    method: str = ""
    first: bool = True
    # Pools of this many workers instead of --processes (oversubscribed rows).
    workers: int = 0
    # The workload this row runs, when its key says more (default: the key).
    workload: str = ""
    # Payload rows: the target of the first payload call in a fresh
    # interpreter (the "cold" ratio), beside ``target`` for the warm one.
    cold_target: Optional[float] = None
    # The median ratio's target under load, where the issue gives one (every
    # row also has LOADED_WORST_ROUND_TARGET for its worst round).
    loaded_target: Optional[float] = None

    @property
    def runs(self) -> str:
        return self.workload or self.key


# Pool sizes of the oversubscribed rows (9a, 9b), whatever the core count.
OVERSUBSCRIBED = (16, 64)


def _k(n: int) -> str:
    return f"{n:,}"


def rows(cfg: Config) -> List[Row]:
    """The rows of the report, with the sizes of this configuration."""
    n_apply = cfg.size(2_000, 200)
    n_small = cfg.size(20_000, 2_000)
    n_big = cfg.size(200_000, 20_000)
    n_payload = cfg.size(64, 8)
    n_cpu = cfg.size(64, 16)
    w = cfg.processes
    out = [
        Row(
            "apply_round_trip",
            "1",
            f"apply_async(f, (i,)).get() x {_k(n_apply)}",
            "pool",
            0.07,
            n_apply,
            loaded_target=0.50,
        ),
        Row(
            "map_chunksize_1",
            "2",
            f"map(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
        ),
        Row(
            "imap_unordered_chunksize_1",
            "3",
            f"imap_unordered(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
        ),
        Row(
            "map_default_chunksize",
            "4",
            f"map(f, range({_k(n_big)})), default chunksize",
            "pool",
            0.45,
            n_big,
        ),
        Row(
            "payload_bytes",
            "5a",
            f"map(identity, {n_payload} x 8 MiB bytes, chunksize=1)",
            "pool",
            0.35,
            n_payload,
            cold_target=0.25,
        ),
        Row(
            "payload_arrays",
            "5b",
            f"map(identity, {n_payload} x 8 MiB numpy, chunksize=1)",
            "pool",
            0.25,
            n_payload,
        ),
    ]
    available = multiprocessing.get_all_start_methods()
    for m in START_METHODS:
        if m not in available:
            continue
        out.append(
            Row(f"startup_{m}_first", "6", f"start-up {m}: first pool", "startup", 1.0, 4, m, True)
        )
        out.append(
            Row(
                f"startup_{m}_repeated",
                "6",
                f"start-up {m}: repeated pools",
                "startup",
                1.0,
                4,
                m,
                False,
            )
        )
    out += [
        Row("cpu_bound", "7", f"cpu-bound: {n_cpu} x ~15 ms tasks", "cpu", 1.05, n_cpu),
        Row("cpu_efficiency", "7", f"cpu-bound: % of {w}x serial speed", "efficiency", 0.90, n_cpu),
        Row(
            "executor_round_trip",
            "8a",
            f"executor submit(f, i).result() x {_k(n_apply)}",
            "executor",
            0.12,
            n_apply,
        ),
        Row(
            "executor_map_chunksize_1",
            "8b",
            f"executor.map(f, range({_k(n_small)}), chunksize=1)",
            "executor",
            0.15,
            n_small,
        ),
    ]
    # More workers than cores: each keeps the ratio of its 2-worker row.
    for label, workers in (("9a", OVERSUBSCRIBED[0]), ("9b", OVERSUBSCRIBED[1])):
        out += [
            Row(
                f"apply_round_trip_{workers}_workers",
                label,
                f"{workers} workers: apply_async(f, (i,)).get() x {_k(n_apply)}",
                "pool",
                0.20,
                n_apply,
                workers=workers,
                workload="apply_round_trip",
            ),
            Row(
                f"map_chunksize_1_{workers}_workers",
                label,
                f"{workers} workers: map(f, range({_k(n_small)}), chunksize=1)",
                "pool",
                0.25,
                n_small,
                workers=workers,
                workload="map_chunksize_1",
            ),
        ]
    # Point 1's short script, run as a process and timed from outside.
    for m in START_METHODS:
        if m in available:
            out.append(
                Row(
                    f"script_{m}",
                    "10",
                    f"whole script, {m}: Pool(2).map(sq, range(100))",
                    "script",
                    0.90,
                    100,
                    m,
                )
            )
    return out


def select_rows(all_rows: List[Row], spec: Optional[str]) -> List[Row]:
    """``--workloads 1,5a,startup_fork_first``: by label (``5`` takes 5a and
    5b) or by key."""
    if not spec:
        return all_rows
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [
        r
        for r in all_rows
        if any(
            r.key == s or r.label == s or (s.isdigit() and r.label.rstrip("ab") == s)
            for s in wanted
        )
    ]
    if any(r.key == "cpu_efficiency" for r in chosen) and not any(
        r.key == "cpu_bound" for r in chosen
    ):
        chosen.insert(0, next(r for r in all_rows if r.key == "cpu_bound"))
    return chosen
