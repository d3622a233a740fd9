"""A worker runs the user's code, so whatever arrives on its socket is
untrusted: tasks here write forged frames onto their worker's real socket,
and the parent must not believe them. The signalled "victim" is a `sleep`
started by the test in a session of its own, checked alive afterwards."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time

import _hostile_helpers as hh
import ferropool
import pytest
from _support import METHODS, child_env
from ferropool import TaskTimeoutError, WorkerLostError


@pytest.fixture
def victim():
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _started_records(caplog):
    """The engine's "worker N (pid P) started" lines: one per Ready frame."""
    return [
        r
        for r in caplog.records
        if r.name == "ferropool"
        and r.getMessage().startswith("worker ")
        and r.getMessage().endswith(" started")
    ]


def _wait_for(predicate, timeout=10.0):
    """Polls `predicate` (a hang guard, not a speed bound)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_terminate_never_signals_a_pid_a_worker_claims(method, victim, caplog):
    caplog.set_level(logging.INFO, logger="ferropool")
    pool = ferropool.get_context(method).Pool(2)
    try:
        assert pool.map(abs, range(-4, 4)) == [4, 3, 2, 1, 0, 1, 2, 3]
        assert _wait_for(lambda: len(_started_records(caplog)) >= 2)
        before = len(_started_records(caplog))
        assert pool.apply(hh.forge_ready, (os.getpid(), victim.pid)) >= 1
        # The engine read the forged frame (it logs every Ready it reads).
        assert _wait_for(lambda: len(_started_records(caplog)) > before), caplog.text
    finally:
        pool.terminate()
    time.sleep(0.2)
    assert victim.poll() is None, "terminate() signalled the pid a worker claimed"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_task_timeout_kills_the_real_worker_not_the_claimed_pid(method, victim):
    with ferropool.get_context(method).Pool(1, task_timeout=1.0) as pool:
        worker = pool.apply(os.getpid)
        res = pool.apply_async(hh.forge_ready_then_sleep, (os.getpid(), victim.pid, 30))
        with pytest.raises(TaskTimeoutError):
            res.get(timeout=30)
        assert victim.poll() is None, "task_timeout killed the pid a worker claimed"
        assert pool.apply(os.getpid) != worker  # the real worker was replaced
        assert _wait_for(lambda: not os.path.exists(f"/proc/{worker}"))


CONTAINED = textwrap.dedent(
    """
    import os, subprocess, sys, time
    import ferropool
    import _hostile_helpers as hh

    if __name__ == "__main__":
        method, claimed = sys.argv[1], int(sys.argv[2])
        victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
        pool = ferropool.get_context(method).Pool(2)
        print("forged", pool.apply(hh.forge_ready, (os.getpid(), claimed)), flush=True)
        time.sleep(0.5)
        pool.terminate()
        time.sleep(0.3)
        print("victim alive" if victim.poll() is None else "victim killed", flush=True)
        victim.kill()
        print("survived", flush=True)
    """
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("claimed", [0, 0xFFFFFFFF], ids=["pid0", "pid-1"])
@pytest.mark.parametrize("method", METHODS)
def test_claimed_pid_0_or_minus_1_signals_nothing(method, claimed, tmp_path):
    """pid 0 would be the caller's own process group, 0xFFFFFFFF kill(-1):
    every process the user may signal. Run in a PID namespace and a session
    of its own (as root, as this project's machines and CI run), so that a
    regression cannot reach the rest of the machine; the script is not pid 1
    there (init ignores default signals), so pid 0 hitting it would show."""
    unshare = shutil.which("unshare")
    probe = subprocess.run(
        [unshare or "unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True
    )
    if unshare is None or probe.returncode != 0:
        pytest.skip("needs unshare --pid (root) to contain the test")
    script = tmp_path / "contained.py"
    script.write_text(CONTAINED)
    command = f'"{sys.executable}" "{script}" {method} {claimed}; echo "exit $?"'
    done = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", command],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=80,
        # Process groups are not confined by the namespace: kill(0) there
        # would reach this test's own group.
        start_new_session=True,
    )
    out = done.stdout
    assert "forged " in out and "forged 0" not in out, out + done.stderr
    assert "victim alive" in out, out + done.stderr
    assert "survived" in out and "exit 0" in out, out + done.stderr


# ----- frames that break the protocol ------------------------------------------------

PARTIAL = ["header_only", "three_bytes", "two_gib_length"]
BEYOND_MEMORY = ["beyond_memory", "largest_length"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
def test_a_frame_cut_short_fails_its_task_and_frees_the_channel(method):
    """A frame begun and never finished: the task fails with an error naming
    the worker and what it sent, the worker is replaced, and the tasks sent
    after it still run (they were swallowed for ever before)."""
    with ferropool.get_context(method).Pool(3) as pool:
        assert pool.map(abs, range(-3, 3)) == [3, 2, 1, 0, 1, 2]
        results = [
            pool.apply_async(hh.forge_partial_then_sleep, (os.getpid(), how, 60))
            for how in PARTIAL
        ]
        for res in results:
            with pytest.raises(WorkerLostError) as info:
                res.get(timeout=60)
            message = str(info.value)
            assert "worker process" in message and "broke the protocol" in message, message
            assert "a frame cut short" in message, message
        assert pool.map_async(abs, range(-3, 3), chunksize=1).get(timeout=30) == [
            3, 2, 1, 0, 1, 2
        ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_length_beyond_memory_is_refused_at_once(method):
    """A header claiming more bytes than memory holds (2**62, 2**64 - 1) is a
    broken frame as soon as it arrives: the parent neither aborts on the
    allocation nor waits for bytes that cannot come."""
    with ferropool.get_context(method).Pool(2) as pool:
        for how in BEYOND_MEMORY:
            with pytest.raises(WorkerLostError) as info:
                pool.apply(hh.forge_partial_then_sleep, (os.getpid(), how, 60))
            message = str(info.value)
            assert "broke the protocol" in message, message
            assert "more than this process can allocate" in message, message
        assert pool.map(abs, range(-3, 3), chunksize=1) == [3, 2, 1, 0, 1, 2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_result_for_a_task_the_worker_does_not_hold_is_refused(method):
    """A fresh pool's first call is job 1: task 0 forges a well-formed result
    for task 3 (a later one), for task 9 (never given) and a LOCAL_ERROR for
    itself. None is believed: the forging task fails naming the violation,
    the map never returns a forged value."""
    parent = os.getpid()
    cases = [(3, 0, 42), (9, 0, 42), (0, 7, None)]
    for index, status, value in cases:
        with ferropool.get_context(method).Pool(2) as pool:
            args = [(parent, 1, index, status, value)] + [(0, 0, 0, 0, None)] * 3
            with pytest.raises(WorkerLostError) as info:
                pool.starmap(_forge_on_first, [(i, *a) for i, a in enumerate(args)], chunksize=1)
            message = str(info.value)
            assert "broke the protocol" in message, message
            if status == 7:
                assert "a result with status 7" in message, message
            else:
                assert f"a result for task {index} of job 1" in message, message
            assert pool.map(abs, range(-2, 2)) == [2, 1, 0, 1]


def _forge_on_first(position, parent, job, index, status, value):
    if position == 0:
        hh.forge_result(parent, job, index, status, value)
        time.sleep(0.5)  # the forged frame goes first
    return position


# ----- the fork server's socket ------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_fork_servers_socket_stays_with_its_client():
    """Only the process that started the fork server holds its socket: not
    a `fork` pool's workers, not a plain os.fork() child (either could send
    the server requests otherwise)."""
    from ferropool import _forkserver

    with ferropool.get_context("forkserver").Pool(1) as pool:
        assert pool.apply(abs, (-1,)) == 1
    server = _forkserver._server
    assert server is not None and server.alive()
    assert not os.get_inheritable(server.sock.fileno())
    inode = os.fstat(server.sock.fileno()).st_ino
    assert hh.fds_of_socket(inode) == [server.sock.fileno()]
    with ferropool.get_context("fork").Pool(1) as pool:
        assert pool.apply(hh.fds_of_socket, (inode,)) == []
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, str(len(hh.fds_of_socket(inode))).encode())
        os._exit(0)
    os.close(write_end)
    held = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert held == b"0"
    # The server still serves its client.
    with ferropool.get_context("forkserver").Pool(1) as pool:
        assert pool.apply(abs, (-2,)) == 2


# ----- a task's own session ----------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_task_may_start_a_session_of_its_own(method):
    """As with the stdlib: workers do not lead process groups (a group
    leader cannot call setsid). Only with `task_timeout` do they, so that a
    timed-out task's children die with it: the documented trade-off."""
    with ferropool.get_context(method).Pool(1) as pool:
        sid, pid = pool.apply(hh.start_session)
        assert sid == pid
        assert pool.apply(abs, (-3,)) == 3
    with ferropool.get_context(method).Pool(1, task_timeout=30) as pool:
        with pytest.raises(PermissionError):
            pool.apply(hh.start_session)


# ----- shared-memory frames ------------------------------------------------------------

SHARED_REFUSALS = {
    "none": "a shared-memory frame without its descriptor",
    "pipe": "not a memfd",
    "unsealed": "not sealed against shrinking, growing and writing",
    "writable": "not sealed against shrinking, growing and writing",
    "short": "bytes for a payload of 1048576",
    "sparse": "allocated",
    "bad_length": "a shared-memory frame with 3 payload bytes",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_a_shared_memory_result_is_checked_before_it_is_mapped(method):
    """A result announced as shared memory is believed only with a memfd
    sealed against shrinking (which would make reading it crash the parent
    with SIGBUS), growing and writing, as long as it claims and without
    holes. Each wrong descriptor fails the task naming what was wrong; the
    pool goes on. A well-formed one is taken (any worker may send one)."""
    for how, why in SHARED_REFUSALS.items():
        with ferropool.get_context(method).Pool(2) as pool:
            # A fresh pool's first call is job 1, its only task number 0.
            with pytest.raises(WorkerLostError) as info:
                pool.apply(hh.forge_shared_result, (os.getpid(), 1, 0, how))
            message = str(info.value)
            assert "broke the protocol" in message, (how, message)
            assert why in message, (how, message)
            assert pool.map(abs, range(-2, 2)) == [2, 1, 0, 1]
    with ferropool.get_context(method).Pool(1) as pool:
        # (The forging task ends its worker right after: a task sent to that
        # worker meanwhile would fail for it, so nothing else runs here.)
        assert pool.apply(hh.forge_shared_result, (os.getpid(), 1, 0, "sealed")) == "forged"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_descriptors_without_frames_are_refused(method):
    """Descriptors sent with bytes that are no shared-memory frame would fill
    the parent's descriptor table: the worker is killed for it, and every
    descriptor it sent is closed."""
    before = len(os.listdir("/proc/self/fd"))
    with ferropool.get_context(method).Pool(2) as pool:
        with pytest.raises(WorkerLostError) as info:
            pool.apply(hh.flood_descriptors, (os.getpid(), 200))
        message = str(info.value)
        assert "broke the protocol" in message, message
        assert "descriptors without frames for them" in message or "descriptors in one" in message
        assert pool.map(abs, range(-2, 2)) == [2, 1, 0, 1]
    assert _wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before + 2)
