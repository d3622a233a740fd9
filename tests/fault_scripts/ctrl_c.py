"""Blocks in a pool or executor call until Ctrl-C (SIGINT) arrives.

    python ctrl_c.py KIND METHOD BLOCKER
    KIND: pool | executor
    BLOCKER (pool): get | map | imap | join
    BLOCKER (executor): result | map | as_completed | shutdown

Prints the JSON list of its pool's process pids and "blocking", then blocks
inside a with block; prints "interrupted" when KeyboardInterrupt reaches the
call, re-raises, and prints "left the with block" once the with block's exit
(which must stop the workers) is done.
"""

import concurrent.futures as cf
import json
import sys
import time

import ferropool
from _fault_helpers import own_processes, sleep_then, square

LONG = 120  # seconds: far past the test's hang guard


def block_pool(pool, blocker):
    if blocker == "get":
        pool.apply_async(sleep_then, (LONG,)).get()
    elif blocker == "map":
        pool.map(sleep_then, [LONG, LONG], chunksize=1)
    elif blocker == "imap":
        for _ in pool.imap(sleep_then, [LONG, LONG]):
            pass
    elif blocker == "join":
        pool.apply_async(sleep_then, (LONG,))
        pool.close()
        pool.join()


def block_executor(ex, blocker):
    if blocker == "result":
        ex.submit(sleep_then, LONG).result()
    elif blocker == "map":
        for _ in ex.map(sleep_then, [LONG, LONG]):
            pass
    elif blocker == "as_completed":
        for f in cf.as_completed([ex.submit(sleep_then, LONG) for _ in range(2)]):
            f.result()
    elif blocker == "shutdown":
        ex.submit(sleep_then, LONG)
        ex.shutdown(wait=True)


def announce(method):
    # The workers, the zygote for forkserver, and the fork server.
    expected = {"spawn": 2, "fork": 2, "forkserver": 4}[method]
    deadline = time.monotonic() + 20
    while len(own_processes()) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps(own_processes()), flush=True)
    print("blocking", flush=True)


def block(block_in, runner, blocker):
    try:
        block_in(runner, blocker)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise


def main():
    kind, method, blocker = sys.argv[1:4]
    ctx = ferropool.get_context(method)
    try:
        if kind == "pool":
            with ctx.Pool(2) as pool:
                assert pool.map(square, range(4)) == [0, 1, 4, 9]
                announce(method)
                block(block_pool, pool, blocker)
        else:
            with ferropool.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
                announce(method)
                block(block_executor, ex, blocker)
    except KeyboardInterrupt:
        print("left the with block", flush=True)
        raise
    print("not interrupted", flush=True)


if __name__ == "__main__":
    main()
