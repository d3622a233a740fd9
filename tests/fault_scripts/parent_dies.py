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
from _fault_helpers import own_processes, sleep_then, square


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
    # Two workers, the zygote for forkserver, and the fork server.
    expected = {"spawn": 2, "fork": 2, "forkserver": 4}[method]
    deadline = time.monotonic() + 20
    while len(own_processes()) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    if state == "busy":
        time.sleep(0.3)  # the tasks are running
    print(json.dumps(own_processes()), flush=True)
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
