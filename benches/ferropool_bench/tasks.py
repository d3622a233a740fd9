"""The task functions the benchmark's workers run, by name.

A module of their own that imports nothing: a worker of any start method
imports it to unpickle its first task, and that import lands inside the
timed start-up rows for every implementation alike, so it is kept to the
size of a user's small module. ``python -m ferropool demo`` has its own
``burn`` and ``inc`` in the installed package (ferropool/_demo_tasks.py):
importing them from there would make every stdlib worker import ferropool.
tests/test_bench_runner.py checks that the two copies agree.
"""

from __future__ import annotations


def inc(x: int) -> int:
    return x + 1


def identity(x: object) -> object:
    return x


def burn(n: int) -> str:
    """About 15 ms of pure-Python work (on a 2020s x86 core), checkable."""
    import hashlib  # only the CPU-bound row needs it

    h = hashlib.sha256(str(n).encode())
    total = 0
    for i in range(180_000):
        total = (total * 31 + i * n) % 1_000_003
    h.update(str(total).encode())
    return h.hexdigest()[:12]
