"""Constants and process/thread bookkeeping shared by the Pool tests."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ferropool
import psutil

TESTS = Path(__file__).resolve().parent

METHODS = ("fork", "spawn", "forkserver")
WORKER_PREFIX = {
    "fork": "ForkPoolWorker-",
    "spawn": "SpawnPoolWorker-",
    "forkserver": "ForkServerPoolWorker-",
}


def child_env() -> dict:
    """Environment for a script run in a subprocess: it can import _helpers."""
    path = [str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), PYTHONIOENCODING="utf-8")


def run_python(*args: str, cwd=None, timeout: float = 50) -> subprocess.CompletedProcess:
    """Runs `python ARGS...` in a fresh interpreter (it can import the test
    helpers); its output as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_script(
    directory: Path, text: str, *args: str, timeout: float = 50
) -> subprocess.CompletedProcess:
    """Writes `text` to a script in `directory` and runs it (run_python)."""
    script = directory / "script.py"
    script.write_text(text)
    return run_python(str(script), *args, timeout=timeout)


def default_sigint() -> None:
    """A Popen `preexec_fn` for scripts that must take Ctrl-C: a shell
    without job control starts background commands with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler. The script gets the
    disposition of a program started at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_pool_with(method: str, style: str, *args, **kwargs):
    """Builds a ferropool Pool for `method`, either from ferropool's context
    ("ferro") or by passing the stdlib's context as `context=` ("stdlib")."""
    if style == "ferro":
        return ferropool.get_context(method).Pool(*args, **kwargs)
    return ferropool.Pool(*args, context=multiprocessing.get_context(method), **kwargs)


# ----- process and thread bookkeeping ---------------------------------------


def descendants(root: int | None = None) -> list:
    try:
        return psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_running(procs) -> list:
    """The processes of `procs` that still run code (zombies do not, nor a
    process caught while its parent reaps it: status "dead")."""
    ended = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() not in ended:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_gone(procs, timeout: float = 10.0) -> list:
    """Polls until none of `procs` runs (hang guard only); returns the rest."""
    deadline = time.monotonic() + timeout
    alive = still_running(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = still_running(alive)
    return alive


def ferropool_threads(exclude=()) -> list:
    return [t for t in threading.enumerate() if t.name.startswith("ferropool") and t not in exclude]
