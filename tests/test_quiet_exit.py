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


SEVERAL = textwrap.dedent(
    """
    import json, sys, time
    import ferropool

    def note(path):
        time.sleep(0.5)
        with open(path, "w") as f:
            f.write("done")

    if __name__ == "__main__":
        method, out = sys.argv[1], sys.argv[2]
        pools = [ferropool.get_context(method).Pool(2) for _ in range(2)]
        for pool in pools:  # busy, and nobody closes them
            pool.map_async(time.sleep, [30] * 4, chunksize=1)
        ex = ferropool.ProcessPoolExecutor(2, mp_context=ferropool.get_context(method))
        ex.submit(abs, -1).result()
        ex.submit(note, out)  # still pending at exit: it runs to the end
        engines = [pool._engine for pool in pools] + [ex._core.engine]
        pids = [pid for engine in engines for pid in engine.status()[2]]
        print(json.dumps(pids), flush=True)
    """
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_exit_stops_every_forgotten_pool_and_finishes_executor_work(method, tmp_path):
    """Two busy pools and an executor with work pending, none of them
    closed: at exit the pools are terminated, the executor's work runs to
    the end, and nothing is left running."""
    import json

    import psutil

    out = str(tmp_path / "mark")
    done = run_script(tmp_path, SEVERAL, method, out, timeout=80)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert (tmp_path / "mark").read_text() == "done"
    pids = json.loads(done.stdout)
    assert len(pids) == 6
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
