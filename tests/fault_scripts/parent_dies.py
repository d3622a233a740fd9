"""Starts a pool (or an executor), prints the pids of its processes as one
JSON line, then waits to be killed (by the test) or, told "die" on stdin,
dies itself the way argv says.

    python parent_dies.py KIND METHOD STATE DEATH
    KIND: pool | executor   STATE: idle | busy
    DEATH: signal (the test sends it) | os_exit | exception | return
"""

import json
import os
import sys
import time

import ferropool
import psutil
from _fault_helpers import SHARED_HELPERS, sleep_then, square


def pool_processes():
    """This process's descendants, less the stdlib's shared helpers."""
    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if not any(name in cmd for name in SHARED_HELPERS):
            pids.append(p.pid)
    return pids


def main():
    kind, method, state, death = sys.argv[1:5]
    ctx = ferropool.get_context(method)
    if kind == "pool":
        runner = ctx.Pool(2)
        assert runner.map(square, range(8), chunksize=1) == [i * i for i in range(8)]
        if state == "busy":
            runner.map_async(sleep_then, [60] * 4, chunksize=1)
    else:
        runner = ferropool.ProcessPoolExecutor(2, mp_context=ctx)
        assert list(runner.map(square, range(8))) == [i * i for i in range(8)]
        if state == "busy":
            futures = [runner.submit(sleep_then, 60) for _ in range(4)]  # noqa: F841
    # Two workers, and the zygote for fork and forkserver.
    expected = 2 if method == "spawn" else 3
    deadline = time.monotonic() + 20
    while len(pool_processes()) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    if state == "busy":
        time.sleep(0.3)  # the tasks are running
    print(json.dumps(pool_processes()), flush=True)
    sys.stdin.readline()
    if death == "os_exit":
        os._exit(1)  # no atexit handlers, no finalizers
    if death == "exception":
        raise RuntimeError("the parent fails on purpose")
    if death == "return":
        return  # interpreter exit with the pool still running
    time.sleep(600)


if __name__ == "__main__":
    main()
