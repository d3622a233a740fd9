"""The forkserver start method: one fork server per parent process (as the
stdlib's), a zygote of its own for every pool, nothing left behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import _helpers as h
import ferropool
import psutil
import pytest
from _support import still_running, wait_gone
from ferropool import _forkserver

CTX = ferropool.get_context("forkserver")


def server_pid() -> int:
    server = _forkserver._server
    assert server is not None and server.alive(), "no fork server runs"
    return server.proc.pid


def parent_of(pid: int) -> int:
    return psutil.Process(pid).ppid()


def test_pools_share_one_server_and_each_has_its_own_zygote():
    with CTX.Pool(2) as first:
        first_workers = set(first.map(h.pid, range(8), chunksize=1))
        server = server_pid()
        first_zygotes = {parent_of(pid) for pid in first_workers}
        assert {parent_of(z) for z in first_zygotes} == {server}
    with CTX.Pool(2) as second:
        second_workers = set(second.map(h.pid, range(8), chunksize=1))
        assert server_pid() == server, "the second pool started another fork server"
        second_zygotes = {parent_of(pid) for pid in second_workers}
        assert {parent_of(z) for z in second_zygotes} == {server}
    assert len(first_zygotes) == len(second_zygotes) == 1
    assert first_zygotes != second_zygotes, "two pools shared a zygote"
    # Both pools are gone, zygotes included; the server stays for the next.
    assert still_running([psutil.Process(server)]) != []
    for pid in first_workers | second_workers | first_zygotes | second_zygotes:
        try:
            assert still_running([psutil.Process(pid)]) == [], f"process {pid} still runs"
        except psutil.NoSuchProcess:
            pass  # gone and reaped


def test_a_killed_server_is_replaced_by_the_next_pool():
    with CTX.Pool(1) as pool:
        assert pool.apply(h.square, (3,)) == 9
    old = server_pid()
    os.kill(old, signal.SIGKILL)
    assert wait_gone([psutil.Process(old)]) == []
    with CTX.Pool(1) as pool:
        assert pool.apply(h.square, (4,)) == 16
        assert server_pid() != old


def test_a_running_pool_outlives_its_server():
    """The zygote talks to its pool directly: the server's death costs the
    running pool nothing."""
    pool = CTX.Pool(2)
    try:
        assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
        os.kill(server_pid(), signal.SIGKILL)
        assert pool.map(h.square, range(20), chunksize=1) == [i * i for i in range(20)]
    finally:
        pool.terminate()


def test_sys_path_added_after_the_server_started_reaches_new_pools(tmp_path, monkeypatch):
    with CTX.Pool(1) as pool:
        assert pool.apply(h.square, (2,)) == 4  # the server runs
    module = tmp_path / "late_module_for_forkserver.py"
    module.write_text("def triple(x):\n    return 3 * x\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import late_module_for_forkserver as late

    try:
        with CTX.Pool(1) as pool:
            assert pool.map(late.triple, [1, 2]) == [3, 6]
    finally:
        sys.modules.pop("late_module_for_forkserver", None)


@pytest.mark.timeout(60)
def test_a_forked_child_starts_a_server_of_its_own(tmp_path):
    """A fork of the parent inherits the server's socket but must not use it."""
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            sys.path.insert(0, sys.argv[1])
            import ferropool, _helpers as h
            from ferropool import _forkserver
            ctx = ferropool.get_context("forkserver")
            if __name__ == "__main__":
                with ctx.Pool(1) as pool:
                    assert pool.apply(h.square, (5,)) == 25
                parent_server = _forkserver._server.proc.pid
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        with ctx.Pool(1) as pool:
                            assert pool.apply(h.square, (6,)) == 36
                        assert _forkserver._server.proc.pid != parent_server
                        code = 0
                    finally:
                        os._exit(code)
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
                with ctx.Pool(1) as pool:
                    assert pool.apply(h.square, (7,)) == 49
                assert _forkserver._server.proc.pid == parent_server
                print("ok")
            """
        ),
        encoding="utf-8",
    )
    import subprocess

    tests_dir = os.path.dirname(os.path.abspath(h.__file__))
    proc = subprocess.run(
        [sys.executable, str(script), tests_dir],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
