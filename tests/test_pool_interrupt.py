"""Ctrl-C: one SIGINT to a program blocked on a pool (in get(), map(), imap
iteration or join()) raises KeyboardInterrupt there, the program exits and no
worker process is left behind.

Each case runs a small script in a fresh interpreter; the time limits below
are hang guards, not speed requirements."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from _support import METHODS, child_env, default_sigint, wait_gone

SCRIPT = textwrap.dedent(
    """
    import sys
    import ferropool
    from _helpers import sleep_then, square

    method, blocker, style = sys.argv[1:4]

    def block(pool):
        if blocker == "get":
            pool.apply_async(sleep_then, (60,)).get()
        elif blocker == "get_timeout":
            pool.apply_async(sleep_then, (60,)).get(timeout=50)
        elif blocker == "map":
            pool.map(sleep_then, [60, 60], chunksize=1)
        elif blocker == "imap":
            for _ in pool.imap(sleep_then, [60, 60]):
                pass
        elif blocker == "join":
            pool.apply_async(sleep_then, (60,))
            pool.close()
            pool.join()

    if __name__ == "__main__":
        pool = ferropool.get_context(method).Pool(2)
        assert pool.map(square, range(4)) == [0, 1, 4, 9]  # the workers are up
        print("blocking", flush=True)
        try:
            if style == "with":
                with pool:
                    block(pool)
            else:  # a pool nobody closes: the interpreter's exit must stop it
                block(pool)
        except KeyboardInterrupt:
            print("caught KeyboardInterrupt", flush=True)
            raise
        print("not interrupted", flush=True)
    """
)

HANG_GUARD = 30  # seconds; the stdlib and ferropool both take well under 2 s

def run_and_interrupt(tmp_path, method, blocker, style):
    script = tmp_path / "blocked.py"
    script.write_text(SCRIPT, encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, str(script), method, blocker, style],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    ) as proc:
        try:
            line = proc.stdout.readline()
            assert line.strip() == "blocking", line + proc.stderr.read()
            workers = psutil.Process(proc.pid).children(recursive=True)
            assert workers, "the script's pool started no process"
            time.sleep(0.5)  # let it settle in the blocking call
            assert proc.poll() is None, proc.stderr.read()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return proc.returncode, out, err, workers


@pytest.mark.timeout(90)
@pytest.mark.parametrize("blocker", ["get", "map", "imap", "join"])
@pytest.mark.parametrize("method", METHODS)
def test_one_ctrl_c_interrupts_a_blocked_call(tmp_path, method, blocker):
    code, out, err, workers = run_and_interrupt(tmp_path, method, blocker, "with")
    assert "caught KeyboardInterrupt" in out, err
    assert "not interrupted" not in out
    assert "KeyboardInterrupt" in err
    assert code != 0
    assert wait_gone(workers) == [], f"workers left behind: {workers}\n{err}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("blocker", ["get", "get_timeout", "imap"])
def test_ctrl_c_with_a_pool_nobody_closes(tmp_path, blocker):
    code, out, err, workers = run_and_interrupt(tmp_path, "fork", blocker, "bare")
    assert "caught KeyboardInterrupt" in out, err
    assert "KeyboardInterrupt" in err
    assert code != 0
    assert wait_gone(workers) == [], f"workers left behind: {workers}\n{err}"
