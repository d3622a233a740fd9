"""Interpreter exit while a daemon thread still waits on a pool nobody
closed: the pool is terminated (as the stdlib's), the program exits with
its own code, leaves no worker behind and prints nothing (the stdlib's
waiting thread never returns, so it prints nothing either)."""

from __future__ import annotations

import textwrap

import pytest
from _support import METHODS, run_script

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import ferropool

    def wait_on(pool, how):
        if how == "map":
            pool.map(time.sleep, [30] * 4, chunksize=1)
        elif how == "imap":
            for _ in pool.imap(time.sleep, [30] * 4):
                pass
        else:
            pool.apply_async(time.sleep, (30,)).get()

    if __name__ == "__main__":
        method, how = sys.argv[1:3]
        pool = ferropool.get_context(method).Pool(2)
        assert pool.map(abs, [-1, -2]) == [1, 2]
        threading.Thread(target=wait_on, args=(pool, how), daemon=True).start()
        time.sleep(0.5)
        print("main thread done", flush=True)
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["map", "imap", "get"])
@pytest.mark.parametrize("method", METHODS)
def test_exit_with_a_daemon_thread_waiting_on_a_pool_is_silent(method, how, tmp_path):
    done = run_script(tmp_path, SCRIPT, method, how)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "main thread done\n"
    assert done.stderr == "", done.stderr
