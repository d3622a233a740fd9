"""Memory per task: a map over a million tiny tasks costs the parent little
more than its result list (a pointer and an int object per task, about 40
bytes, as with the stdlib), not a queue entry, an outcome and a chunk list
per task; and what it took is given back once the result is dropped.

Each case runs in a fresh interpreter, whose peak resident size (VmHWM; not
ru_maxrss, which a process inherits from the one that forked it) is reset
just before the map. The bounds are bytes, not time."""

from __future__ import annotations

import textwrap

import pytest
from _support import run_script

TASKS = 1_000_000
# The bound for tiny tasks, results included.
PEAK_BYTES_PER_TASK = 64
# What may stay after the result is dropped (allocator fragments).
KEPT_BYTES_PER_TASK = 24

SCRIPT = textwrap.dedent(
    """
    import gc, resource, sys
    import ferropool

    def tiny(x):
        return x

    def rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def peak_rss():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    def run(pool, how, n):
        if how == "map":
            return pool.map(tiny, range(n), chunksize=1)
        if how == "map_async_callback":
            got = []
            pool.map_async(tiny, range(n), chunksize=1, callback=got.append).wait()
            return got[0]
        if how == "starmap_unsized":
            return pool.starmap(max, ((i, 0) for i in range(n)), chunksize=1)
        raise ValueError(how)

    if __name__ == "__main__":
        how, n, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        with ferropool.get_context(method).Pool(2) as pool:
            pool.map(tiny, range(1000))
            gc.collect()
            reset_peak()
            base = rss()
            result = run(pool, how, n)
            peak = peak_rss()
            assert len(result) == n and all(map(int.__eq__, result, range(n))), "wrong"
            del result
            gc.collect()
            kept = rss()
        print("peak", (peak - base) / n, "kept", (kept - base) / n)
    """
)


# The bookkeeping is the parent's: `map` runs under every start method, the
# other calls under the default one.
CASES = [
    ("map", "fork"),
    ("map", "spawn"),
    ("map", "forkserver"),
    ("map_async_callback", "fork"),
    ("starmap_unsized", "fork"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how,method", CASES)
def test_a_million_tiny_tasks_cost_little_more_than_their_results(how, method, tmp_path):
    done = run_script(tmp_path, SCRIPT, how, str(TASKS), method, timeout=110)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    peak, kept = float(words[1]), float(words[3])
    assert peak < PEAK_BYTES_PER_TASK, f"{how}: {peak:.0f} bytes per task at the peak"
    assert kept < KEPT_BYTES_PER_TASK, f"{how}: {kept:.0f} bytes per task kept after"
