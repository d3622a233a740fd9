"""A task's own child processes do not hold the pool up. A child forked by
a task inherits its worker's socket, so the socket's end says nothing of the
worker's exit; the engine learns of it from the process itself (a pidfd for
the workers it starts, the zygote's report under forkserver). Each test
checks that the lingering child is still alive when the pool has already
answered, so the answer did not wait for it."""

from __future__ import annotations

import os
import signal

import _helpers as h
import ferropool
import pytest
from ferropool import WorkerLostError

LINGER = 60


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.timeout(45)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_close_and_join_do_not_wait_for_a_tasks_children(method):
    pool = ferropool.get_context(method).Pool(2)
    children = pool.map(h.fork_lingering_child, [LINGER] * 4, chunksize=1)
    try:
        pool.close()
        pool.join()
        assert all(alive(pid) for pid in children), children
    finally:
        kill(children)


@pytest.mark.timeout(45)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_worker_death_is_reported_while_its_tasks_child_lives(method, tmp_path):
    pid_file = tmp_path / "child.pid"
    with ferropool.get_context(method).Pool(2) as pool:
        with pytest.raises(WorkerLostError) as info:
            pool.apply(h.fork_lingering_child_then_die, (LINGER, str(pid_file)))
        child = int(pid_file.read_text())
        try:
            assert "SIGKILL" in str(info.value), info.value
            assert alive(child)
            assert pool.map(abs, range(-2, 2)) == [2, 1, 0, 1]
        finally:
            kill([child])


@pytest.mark.timeout(45)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_an_executor_shutdown_does_not_wait_for_a_tasks_children(method):
    executor = ferropool.ProcessPoolExecutor(2, mp_context=ferropool.get_context(method))
    children = list(executor.map(h.fork_lingering_child, [LINGER] * 3))
    try:
        executor.shutdown(wait=True)
        assert all(alive(pid) for pid in children), children
    finally:
        kill(children)
