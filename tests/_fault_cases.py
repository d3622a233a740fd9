"""Shared pieces of the fault-injection tests (test_faults_*.py): how each
way of dying must be reported, and pool/executor makers."""

from __future__ import annotations

import os
import re
import signal
import traceback

import _fault_helpers as fh
import ferropool
import psutil
from ferropool import (
    BrokenProcessPool,
    ProcessPoolExecutor,
    WorkerLostError,
)

# What the WorkerLostError message must say for each way of dying.
DEATH_PATTERNS = {
    "sigkill": r"SIGKILL|signal 9\b",
    "self_sigkill": r"SIGKILL|signal 9\b",
    "segfault": r"SIGSEGV|signal 11\b",
    "os_exit": r"code 7\b",
    "sys_exit": r"code 5\b",
}
OOM_HINT = re.compile(r"out.of.memory|\bOOM\b", re.I)


def make_pool(method, processes=2, **kwargs):
    return ferropool.get_context(method).Pool(processes, **kwargs)


def make_executor(method, workers=2, **kwargs):
    return ProcessPoolExecutor(workers, mp_context=ferropool.get_context(method), **kwargs)


def inject(how, pidfile):
    """The parent's part of a death: waits for the doomed task to report its
    worker's pid; for "sigkill" kills the worker as the OOM killer would."""
    pid = fh.read_pid(pidfile)
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
    return pid


def assert_worker_lost(exc, how, pid):
    """`exc` is the WorkerLostError of worker `pid` that died by `how`."""
    assert type(exc) is WorkerLostError, repr(exc)
    assert isinstance(exc, BrokenProcessPool)
    message = str(exc)
    assert str(pid) in message, message
    assert re.search(DEATH_PATTERNS[how], message), message
    if how in ("sigkill", "self_sigkill"):
        assert OOM_HINT.search(message), message
    else:
        assert not OOM_HINT.search(message), message


def assert_replaced(dead_pid, count=2):
    """A new worker took the dead one's place."""
    # A signalled process runs on for a moment: count workers once it is gone.
    assert fh.wait_pid_gone(dead_pid) is not None, f"worker {dead_pid} still runs"
    workers = fh.wait_for_workers(count)
    pids = {p.pid for p in workers}
    assert len(pids) == count, f"expected {count} workers, found {sorted(pids)}"
    assert dead_pid not in pids


def error_text(exc):
    """Everything a user sees of `exc`: its type, message, and the chain of
    causes (a remote traceback among them)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def rss():
    return psutil.Process().memory_info().rss
