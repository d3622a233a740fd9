"""The rows of the report (``rows``), with the sizes of a ``Config``, and the
``--workloads`` selection (``select_rows``).

Each row is its data (key, label, title, kind, targets, sizes) and its
behaviour: the round case that times it (``measure``), what a case
server's pool runs for it (``work``), or how it is derived from the rows
before it (``derive``). Adding a row is adding it here.
"""

from __future__ import annotations

import multiprocessing
from typing import List, Optional

from .results import efficiency
from .rounds import PayloadCase, ScriptCase, ServedCase, StartupCase
from .workloads import (
    START_METHODS,
    Config,
    CpuBound,
    ImapUnordered,
    MapInc,
    Payloads,
    RoundTrips,
    Row,
)

# Pool sizes of the oversubscribed rows (9a, 9b), whatever the core count.
OVERSUBSCRIBED = (16, 64)
# Rows 11: ferropool.dask on a LocalCluster against the local engine, the
# ratio the cluster's median / the local pool's (no target: the cost of
# going remote, reported).
DASK_VS_LOCAL = ("ferropool-dask", "ferropool")


def _k(n: int) -> str:
    return f"{n:,}"


def rows(cfg: Config) -> List[Row]:
    """The rows of the report, with the sizes of this configuration."""
    n_apply = cfg.size(2_000, 200)
    n_small = cfg.size(20_000, 2_000)
    n_big = cfg.size(200_000, 20_000)
    n_payload = cfg.size(64, 8)
    n_cpu = cfg.size(64, 16)
    # Dask's round trip takes milliseconds: fewer than row 1's.
    n_remote = cfg.size(200, 50)
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
            work=RoundTrips(),
            measure=ServedCase,
        ),
        Row(
            "map_chunksize_1",
            "2",
            f"map(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
            work=MapInc(1),
            measure=ServedCase,
        ),
        Row(
            "imap_unordered_chunksize_1",
            "3",
            f"imap_unordered(f, range({_k(n_small)}), chunksize=1)",
            "pool",
            0.25,
            n_small,
            work=ImapUnordered(),
            measure=ServedCase,
        ),
        Row(
            "map_default_chunksize",
            "4",
            f"map(f, range({_k(n_big)})), default chunksize",
            "pool",
            0.45,
            n_big,
            work=MapInc(None),
            measure=ServedCase,
        ),
        # A fresh interpreter per round: the first payload call is "cold".
        Row(
            "payload_bytes",
            "5a",
            f"map(identity, {n_payload} x 8 MiB bytes, chunksize=1)",
            "pool",
            0.35,
            n_payload,
            cold_target=0.25,
            work=Payloads(numpy=False),
            measure=PayloadCase,
        ),
        Row(
            "payload_arrays",
            "5b",
            f"map(identity, {n_payload} x 8 MiB numpy, chunksize=1)",
            "pool",
            0.25,
            n_payload,
            work=Payloads(numpy=True),
            measure=PayloadCase,
        ),
    ]
    available = multiprocessing.get_all_start_methods()
    for m in START_METHODS:
        if m not in available:
            continue
        for first, which, title in (
            (True, "first", "first pool"),
            (False, "repeated", "repeated pools"),
        ):
            out.append(
                Row(
                    f"startup_{m}_{which}",
                    "6",
                    f"start-up {m}: {title}",
                    "startup",
                    1.0,
                    4,
                    m,
                    first,
                    measure=StartupCase,
                )
            )
    out += [
        Row(
            "cpu_bound",
            "7",
            f"cpu-bound: {n_cpu} x ~15 ms tasks",
            "cpu",
            1.05,
            n_cpu,
            work=CpuBound(),
            measure=ServedCase,
        ),
        Row(
            "cpu_efficiency",
            "7",
            f"cpu-bound: % of {w}x serial speed",
            "efficiency",
            0.90,
            n_cpu,
            derive=efficiency,
        ),
        Row(
            "executor_round_trip",
            "8a",
            f"executor submit(f, i).result() x {_k(n_apply)}",
            "executor",
            0.12,
            n_apply,
            work=RoundTrips(executor=True),
            measure=ServedCase,
        ),
        Row(
            "executor_map_chunksize_1",
            "8b",
            f"executor.map(f, range({_k(n_small)}), chunksize=1)",
            "executor",
            0.15,
            n_small,
            work=MapInc(1, executor=True),
            measure=ServedCase,
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
                work=RoundTrips(),
                measure=ServedCase,
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
                work=MapInc(1),
                measure=ServedCase,
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
                    measure=ScriptCase,
                )
            )
    # Issue 17: the same work on a Dask cluster of as many workers, started
    # (untimed) by the case like any pool.
    out += [
        Row(
            "dask_cpu_bound",
            "11a",
            f"dask / local, {w} workers: cpu-bound map, {n_cpu} x ~15 ms tasks",
            "remote",
            None,
            n_cpu,
            ratio_of=DASK_VS_LOCAL,
            impls=DASK_VS_LOCAL,
            work=CpuBound(serial_baseline=False),
            measure=ServedCase,
        ),
        Row(
            "dask_round_trip",
            "11b",
            f"dask / local, {w} workers: apply_async(f, (i,)).get() x {_k(n_remote)}",
            "remote",
            None,
            n_remote,
            ratio_of=DASK_VS_LOCAL,
            impls=DASK_VS_LOCAL,
            work=RoundTrips(),
            measure=ServedCase,
        ),
    ]
    return out


def select_rows(all_rows: List[Row], spec: Optional[str]) -> List[Row]:
    """``--workloads 1,5a,startup_fork_first``: by label (``5`` takes 5a and
    5b) or by key. A derived row brings the rows it is derived from (those
    with a serial baseline, before it)."""
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
    if any(r.derive is not None for r in chosen):
        sources = [r for r in all_rows if r.work is not None and r.work.serial_baseline]
        chosen = [r for r in sources if r not in chosen] + chosen
    return chosen
