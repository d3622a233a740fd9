"""Fault injection that needs a parent process of its own: the parent dies
(SIGKILL, SIGTERM, os._exit) or exits with its pool still running, and
Ctrl-C (SIGINT, to the parent alone or to its whole process group as a
terminal sends it) while the executor or the pool is blocked.

Each case runs a script of tests/fault_scripts in a fresh interpreter and
follows the pool's processes with psutil. Time limits are hang guards; the
issue asks for 1 s after the parent's death, the tests allow 5 s and print
what they measured (run with -s to see it)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from _support import METHODS, child_env, default_sigint, still_running

SCRIPTS = Path(__file__).resolve().parent / "fault_scripts"
WORKERS_GONE = 5.0  # seconds; the issue says 1
HANG_GUARD = 30.0
# Leaving the with block after Ctrl-C must stop the workers, not wait for
# their 120 s tasks: 10 s tells the two apart.
WITH_BLOCK_GUARD = 10.0


class Script:
    """A fault script in a subprocess, its stdout read line by line in a
    thread (so that a hang shows as a timeout, never as a blocked test)."""

    def __init__(self, name, *args, new_session=False):
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / name), *args],
            cwd=str(SCRIPTS),
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=new_session,
            preexec_fn=default_sigint,
        )
        self.lines: queue.Queue = queue.Queue()
        self._stderr = ""
        self.readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put((time.monotonic(), None))

    def _read_err(self):
        self._stderr = self.proc.stderr.read()

    @property
    def stderr(self):
        """What the script wrote to stderr. Once it has exited, all of it:
        the pipe ends only when every process holding it (its workers too)
        has closed it, which may come a moment after the script's own exit."""
        if self.proc.poll() is not None:
            self.readers[1].join(HANG_GUARD)
        return self._stderr

    def line(self, timeout=HANG_GUARD):
        """(arrival time, the next line of stdout); None at EOF."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output for {timeout} s; stderr:\n{self.stderr}") from None

    def expect(self, text, timeout=HANG_GUARD):
        """Waits for the line `text`; returns when it arrived."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            at, line = self.line(max(0.01, deadline - time.monotonic()))
            if line == text:
                return at
            if line is None:
                time.sleep(0.2)
                raise AssertionError(f"{text!r} never came; got {seen}; stderr:\n{self.stderr}")
            seen.append(line)

    def pool_processes(self):
        """Reads the JSON line of pids the script prints."""
        _, line = self.line()
        assert line is not None, self.stderr
        procs = []
        for pid in json.loads(line):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        assert procs, "the script's pool started no process"
        return procs

    def wait(self, timeout=HANG_GUARD):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the script did not exit within {timeout} s; stderr:\n{self.stderr}"
            ) from None

    def cleanup(self, procs=()):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in still_running(procs):
            try:
                p.kill()
            except psutil.Error:
                pass
        # The pipes reach EOF once every process holding them is gone.
        for reader in self.readers:
            reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


def time_until_gone(procs, limit):
    """Seconds until none of `procs` runs (zombies do not count); the
    processes still running if that takes longer than `limit`."""
    start = time.monotonic()
    alive = still_running(procs)
    while alive:
        if time.monotonic() - start > limit:
            return None, alive
        time.sleep(0.005)
        alive = still_running(alive)
    return time.monotonic() - start, []


def report(what, seconds):
    print(f"\n[measured] {what}: {seconds:.3f} s")


# ============================================================================
# 4. The parent dies: every worker exits (the issue: within a second)
# ============================================================================

PARENT_DEATHS = [
    *[("pool", m, "busy", "sigkill") for m in METHODS],
    *[("executor", m, "busy", "sigkill") for m in METHODS],
    ("pool", "fork", "idle", "sigkill"),
    ("executor", "spawn", "idle", "sigkill"),
    ("pool", "forkserver", "busy", "sigterm"),
    ("pool", "fork", "busy", "os_exit"),
    ("pool", "spawn", "busy", "os_exit"),
    ("executor", "forkserver", "busy", "os_exit"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "kind,method,state,death", PARENT_DEATHS, ids=["-".join(c) for c in PARENT_DEATHS]
)
def test_parent_death_takes_every_worker_with_it(kind, method, state, death):
    how = "os_exit" if death == "os_exit" else "signal"
    script = Script("parent_dies.py", kind, method, state, how)
    procs = []
    try:
        procs = script.pool_processes()
        # Two workers; for forkserver also the pool's zygote and the server.
        expected = 4 if method == "forkserver" else 2
        assert len(procs) >= expected, f"expected {expected} pool processes, got {procs}"
        start = time.monotonic()
        if death == "sigkill":
            script.proc.send_signal(signal.SIGKILL)
        elif death == "sigterm":
            script.proc.send_signal(signal.SIGTERM)
        else:
            script.proc.stdin.write("die\n")
            script.proc.stdin.flush()
        script.wait()
        _, left = time_until_gone(procs, WORKERS_GONE)
        gone = time.monotonic() - start
        assert left == [], (
            f"{len(left)} pool processes still run {WORKERS_GONE} s after the parent's "
            f"{death}: {[(p.pid, p.name()) for p in left]}"
        )
        report(f"parent {death} ({kind}, {method}, {state}): pool processes gone after", gone)
    finally:
        script.cleanup(procs)


# ============================================================================
# 9. Interpreter exit with the pool still running
# ============================================================================

EXITS = [
    *[("pool", m, "busy", "return") for m in METHODS],
    ("pool", "fork", "busy", "exception"),
    ("executor", "fork", "idle", "return"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind,method,state,how", EXITS, ids=["-".join(c) for c in EXITS])
def test_interpreter_exit_stops_a_forgotten_pool(kind, method, state, how):
    script = Script("parent_dies.py", kind, method, state, how)
    procs = []
    try:
        procs = script.pool_processes()
        start = time.monotonic()
        script.proc.stdin.write("go\n")
        script.proc.stdin.flush()
        code = script.wait()
        exited = time.monotonic() - start
        assert code == (1 if how == "exception" else 0), script.stderr
        if how == "exception":
            assert "the parent fails on purpose" in script.stderr
        # At exit the pool is stopped (and reaped) before the interpreter ends.
        _, left = time_until_gone(procs, WORKERS_GONE)
        assert left == [], f"left behind: {[(p.pid, p.name()) for p in left]}"
        report(f"interpreter exit ({kind}, {method}, {state}, {how})", exited)
    finally:
        script.cleanup(procs)


# ============================================================================
# 5. Ctrl-C: one SIGINT, KeyboardInterrupt at once, the with block's exit
#    stops the workers, nothing left behind, no worker tracebacks
# ============================================================================

CTRL_C = [
    *[("executor", "fork", b, "pid") for b in ("result", "map", "as_completed", "shutdown")],
    ("executor", "spawn", "result", "pid"),
    ("executor", "forkserver", "map", "pid"),
    ("executor", "fork", "result", "group"),
    ("executor", "spawn", "map", "group"),
    *[("pool", m, "map", "group") for m in METHODS],
    ("pool", "spawn", "imap", "group"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind,method,blocker,target", CTRL_C, ids=["-".join(c) for c in CTRL_C])
def test_one_ctrl_c_stops_the_program(kind, method, blocker, target):
    """`target`: "pid" sends SIGINT to the parent alone (kill -INT);
    "group" to its whole process group, as a terminal's Ctrl-C does, so the
    workers get it too and must ignore it."""
    script = Script("ctrl_c.py", kind, method, blocker, new_session=(target == "group"))
    procs = []
    try:
        procs = script.pool_processes()
        script.expect("blocking")
        time.sleep(0.5)  # let it settle in the blocking call
        assert script.proc.poll() is None, script.stderr
        sent = time.monotonic()
        if target == "group":
            os.killpg(script.proc.pid, signal.SIGINT)
        else:
            script.proc.send_signal(signal.SIGINT)
        interrupted = script.expect("interrupted", WITH_BLOCK_GUARD) - sent
        try:
            left_with = script.expect("left the with block", WITH_BLOCK_GUARD) - sent
        except AssertionError as e:
            raise AssertionError(
                f"KeyboardInterrupt reached the call after {interrupted:.3f} s, but leaving the "
                f"with block did not finish within {WITH_BLOCK_GUARD} s: its exit waits for the "
                f"running {kind} tasks (120 s) instead of stopping the workers"
            ) from e
        code = script.wait()
        exited = time.monotonic() - sent
        _, left = time_until_gone(procs, WORKERS_GONE)
        err = script.stderr
        assert code != 0
        assert "KeyboardInterrupt" in err
        assert "PoolWorker" not in err, f"a worker printed a traceback:\n{err}"
        assert left == [], f"left behind: {[(p.pid, p.name()) for p in left]}\n{err}"
        report(
            f"Ctrl-C ({kind}, {method}, {blocker}, to {target}): KeyboardInterrupt after "
            f"{interrupted:.3f} s, with block left after {left_with:.3f} s, exited after",
            exited,
        )
    finally:
        script.cleanup(procs)
