"""The main job: ``python -m ferropool demo``.

Runs two workloads on ferropool.Pool and on multiprocessing.Pool, with the
same start method and worker count, and prints each result and time side by
side:

* cpu-bound: pure-Python work in chunky tasks (the pool's own cost is small
  next to the work; both should be close to N x serial speed);
* many small tasks: 20,000 trivial tasks at chunksize=1 plus 1,000
  ``apply_async(...).get()`` round trips, where the pool's own cost is all
  there is.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import time
from typing import Any, Callable, List, Tuple

import ferropool
from ferropool._demo_tasks import burn, inc


def _cpu_bound(pool: Any) -> Tuple[str, int]:
    results = pool.map(burn, range(64), chunksize=1)
    return hashlib.sha256("".join(results).encode()).hexdigest()[:12], len(results)


def _small_tasks(pool: Any) -> Tuple[int, int]:
    total = sum(pool.map(inc, range(20_000), chunksize=1))
    for i in range(1_000):
        total += pool.apply_async(inc, (i,)).get()
    return total, 21_000


WORKLOADS: List[Tuple[str, Callable[[Any], Tuple[Any, int]]]] = [
    ("cpu-bound: 64 x ~15 ms tasks", _cpu_bound),
    ("small tasks: 20k map(chunksize=1) + 1k apply round trips", _small_tasks),
]


def _run(make_pool: Callable[[], Any], work: Callable[[Any], Tuple[Any, int]]) -> Tuple[Any, float]:
    with make_pool() as pool:
        pool.map(inc, range(pool_size(pool)))  # workers up before the clock starts
        t0 = time.perf_counter()
        result, _ = work(pool)
        return result, time.perf_counter() - t0


def pool_size(pool: Any) -> int:
    return getattr(pool, "_processes", 1)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferropool demo", description=__doc__)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--start-method", default=multiprocessing.get_start_method())
    args = parser.parse_args(argv)
    method, n = args.start_method, args.processes
    print(f"ferropool demo: {n} workers, start method {method!r}, Python {sys.version.split()[0]}")
    print(f"{'workload':<58} {'pool':<10} {'seconds':>8}  result")
    ok = True
    for name, work in WORKLOADS:
        fp_result, fp_time = _run(lambda: ferropool.get_context(method).Pool(n), work)
        mp_result, mp_time = _run(lambda: multiprocessing.get_context(method).Pool(n), work)
        print(f"{name:<58} {'ferropool':<10} {fp_time:8.3f}  {fp_result}")
        print(f"{'':<58} {'stdlib':<10} {mp_time:8.3f}  {mp_result}")
        ratio = fp_time / mp_time
        print(f"{'':<58} {'ratio':<10} {ratio:8.2f}  (ferropool / stdlib, lower is better)")
        ok = ok and fp_result == mp_result
    print("results identical" if ok else "RESULTS DIFFER")
    return 0 if ok else 1
