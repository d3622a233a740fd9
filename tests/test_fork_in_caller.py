"""A plain `os.fork()` in a program that has a live Pool or executor: the
child does not own them (their engine and service threads exist only in the
parent), so it exits at once instead of waiting for them at exit, and using
one raises a clear error. The parent's pool is untouched."""

from __future__ import annotations

import textwrap

import pytest
from _support import METHODS, run_script

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import ferropool

    if __name__ == "__main__":
        kind, method = sys.argv[1:3]
        ctx = ferropool.get_context(method)
        if kind == "Pool":
            runner = ctx.Pool(2)
            use = lambda: runner.map(abs, [-1, -2])
            stop = runner.terminate
        else:
            runner = ferropool.ProcessPoolExecutor(2, mp_context=ctx)
            use = lambda: list(runner.map(abs, [-1, -2]))
            stop = runner.shutdown
        print("parent", use(), flush=True)
        pid = os.fork()
        if pid == 0:
            try:
                use()
                print("child used the parent's pool", flush=True)
            except RuntimeError as e:
                print("child refused:", e, flush=True)
            sys.exit(0)  # exit handlers run: none may wait for the parent's pool
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit code", os.waitstatus_to_exitcode(status), flush=True)
                break
            if time.monotonic() > deadline:
                print("child hung at exit", flush=True)
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        print("parent again", use(), flush=True)
        stop()
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["Pool", "ProcessPoolExecutor"])
@pytest.mark.parametrize("method", METHODS)
def test_a_forked_child_refuses_the_parents_pool_and_exits(method, kind, tmp_path):
    done = run_script(tmp_path, SCRIPT, kind, method)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0] == "parent [1, 2]", done.stdout + done.stderr
    word = "pool" if kind == "Pool" else "executor"
    assert lines[1].startswith(f"child refused: this {word} belongs to process "), lines
    assert "a process forked from it cannot use it" in lines[1]
    assert lines[2] == "child exit code 0", done.stdout + done.stderr
    assert lines[3] == "parent again [1, 2]", done.stdout + done.stderr
