"""The task functions of ``python -m ferropool demo``, by name.

A module of their own: a spawned worker imports it to unpickle its first
task, and the demo's module would bring argparse and typing with it. The
benchmark suite (benches/ferropool_bench/tasks.py, not installed) has its
own copies: its stdlib workers must not import ferropool, which importing
this module would.
"""


def inc(x: int) -> int:
    return x + 1


def burn(n: int) -> str:
    """About 15 ms of pure-Python work (on a 2020s x86 core), checkable."""
    import hashlib

    h = hashlib.sha256(str(n).encode())
    total = 0
    for i in range(180_000):
        total = (total * 31 + i * n) % 1_000_003
    h.update(str(total).encode())
    return h.hexdigest()[:12]
