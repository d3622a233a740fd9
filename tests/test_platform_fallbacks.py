"""The portable fallbacks of the Linux-only facilities (src/platform/,
docs/porting.md), each forced by its environment variable in a fresh
interpreter: the choice is in effect (in the workers too), a killed worker
fails its task with WorkerLostError and is replaced (also while a task's own
child holds the worker's socket), workers die with a SIGKILLed parent, and
large payloads round-trip. `make test-fallbacks` runs the fault tests and
the conformance suite with every fallback forced as well."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import ferropool._native as native
import psutil
import pytest
from _support import METHODS, TESTS, child_env, wait_gone

FACILITIES = {
    "pidfd": "FERROPOOL_NO_PIDFD",
    "pdeathsig": "FERROPOOL_NO_PDEATHSIG",
    "memfd": "FERROPOOL_NO_MEMFD",
    "map_populate": "FERROPOOL_NO_MAP_POPULATE",
    "mallopt": "FERROPOOL_NO_MALLOPT",
}
ALL = {"FERROPOOL_FALLBACKS": "all"}
WORKERS_GONE = 5.0  # seconds after the parent's SIGKILL (as test_faults_process)


def forced(*facilities: str) -> dict:
    """The environment that forces the fallback of each facility named."""
    return {FACILITIES[f]: "1" for f in facilities}


def clean_env(extra: dict) -> dict:
    """child_env() without any forcing inherited from this run (make
    test-fallbacks sets FERROPOOL_FALLBACKS), plus `extra`."""
    env = {k: v for k, v in child_env().items() if not k.startswith("FERROPOOL_")}
    return dict(env, **extra)


def run(code: str, env: dict, timeout: float = 60) -> str:
    """Runs `code` (dedented) in a fresh interpreter; its stdout. Fails with
    its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(TESTS),
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


FEATURES = "import json, ferropool._native as n; print(json.dumps(n.platform_features()))"


def test_features_name_every_facility():
    features = json.loads(run(FEATURES, {}))
    assert set(features) == set(FACILITIES)
    assert set(features.values()) <= {"native", "fallback"}


@pytest.mark.parametrize("facility", sorted(FACILITIES))
def test_each_variable_forces_its_own_fallback_only(facility):
    unforced = json.loads(run(FEATURES, {}))
    features = json.loads(run(FEATURES, forced(facility)))
    assert features[facility] == "fallback"
    others = {f: c for f, c in features.items() if f != facility}
    assert others == {f: c for f, c in unforced.items() if f != facility}


def test_fallbacks_all_forces_every_one():
    features = json.loads(run(FEATURES, ALL))
    assert set(features.values()) == {"fallback"}, features
    assert json.loads(run(FEATURES, {"FERROPOOL_FALLBACKS": "pidfd,memfd"})) == dict(
        json.loads(run(FEATURES, {})), pidfd="fallback", memfd="fallback"
    )


@pytest.mark.parametrize("method", METHODS)
def test_workers_make_the_parents_choice(method):
    out = run(
        f"""
        import json, ferropool, ferropool._native as n
        import _helpers as h
        if __name__ == "__main__":
            with ferropool.get_context({method!r}).Pool(1) as pool:
                print(json.dumps([n.platform_features(), pool.apply(h.platform_features)]))
        """,
        ALL,
    )
    parent, worker = json.loads(out)
    assert parent == worker and set(worker.values()) == {"fallback"}, (parent, worker)


DEATH = """
import os, ferropool
import _helpers as h
from ferropool import WorkerLostError
if __name__ == "__main__":
    with ferropool.get_context({method!r}).Pool(2) as pool:
        try:
            pool.apply(h.fork_lingering_child_then_die, (60, {pid_file!r}))
        except WorkerLostError as e:
            print("lost:", e)
        child = int(open({pid_file!r}).read())
        try:
            os.kill(child, 0)
            print("child alive")
            print(pool.map(abs, range(-2, 2)))
        finally:
            os.kill(child, 9)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["pidfd", "all"])
@pytest.mark.parametrize("method", METHODS)
def test_a_killed_worker_is_lost_and_replaced_while_its_tasks_child_holds_the_socket(
    method, how, tmp_path
):
    env = ALL if how == "all" else forced("pidfd")
    start = time.monotonic()
    out = run(DEATH.format(method=method, pid_file=str(tmp_path / "child.pid")), env)
    lines = out.splitlines()
    assert lines[0].startswith("lost:") and "SIGKILL" in lines[0], out
    assert lines[1:] == ["child alive", "[2, 1, 0, 1]"], out
    # The lingering child lives 60 s: the death was not learnt from its end.
    assert time.monotonic() - start < 30


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["pdeathsig", "all"])
@pytest.mark.parametrize("method", METHODS)
def test_workers_die_with_a_sigkilled_parent(method, how):
    env = ALL if how == "all" else forced("pdeathsig")
    script = TESTS / "fault_scripts" / "parent_dies.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "pool", method, "busy", "signal"],
        cwd=str(script.parent),
        env=clean_env(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = []
    try:
        assert proc.stdout is not None
        pids = json.loads(proc.stdout.readline() or "null")
        assert pids, proc.stderr.read() if proc.stderr else ""
        procs = [psutil.Process(pid) for pid in pids]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        left = wait_gone(procs, WORKERS_GONE)
        assert left == [], f"still running after the parent's SIGKILL: {left}"
    finally:
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


LARGE = """
import ferropool
import _helpers as h
MIB = 1 << 20
if __name__ == "__main__":
    with ferropool.get_context({method!r}).Pool(2) as pool:
        sent = [bytes(range(256)) * (4 * MIB // 256), bytearray(b"x" * (3 * MIB + 7))]
        assert pool.map(h.identity, sent, chunksize=1) == sent
        blocks = pool.starmap(h.block_of, [(2 * MIB, 7), (3 * MIB, 9)])
        assert [b.tobytes() for b in blocks] == [b"\\7" * 2 * MIB, b"\\t" * 3 * MIB]
        print("ok")
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["memfd", "map_populate", "all"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_large_payloads_round_trip(method, how):
    env = ALL if how == "all" else forced(how)
    assert run(LARGE.format(method=method), env).strip() == "ok"


def test_a_lifeline_is_made_only_for_the_fallback():
    assert run("import ferropool._native as n; print(n.lifeline_for_children())", {}) in (
        "None\n",
        # A kernel without PR_SET_PDEATHSIG: the fallback is chosen anyway.
        *[f"{fd}\n" for fd in range(3, 64)],
    )
    fd = run("import ferropool._native as n; print(n.lifeline_for_children())", ALL)
    assert int(fd) >= 0
    assert native.LIFELINE_ENV == "FERROPOOL_LIFELINE_FD"


def test_a_worker_whose_lifeline_breaks_kills_itself_and_its_group():
    """The fallback's watcher, alone: a child that leads its own process
    group and was handed the read end dies, with a grandchild of its group,
    as soon as the write end closes."""
    code = """
        import os, signal, sys, time, ferropool._native as n
        lifeline = n.lifeline_for_children()
        child = os.fork()
        if child == 0:
            os.setpgid(0, 0)
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(60)
                os._exit(0)
            n.die_with_parent(lifeline)
            print(grandchild, flush=True)
            time.sleep(60)
            os._exit(0)
        time.sleep(0.5)
        print(child, flush=True)
        os._exit(0)
    """
    out = run(code, ALL)
    pids = [int(line) for line in out.split()]
    assert len(pids) == 2
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    left = wait_gone(procs, WORKERS_GONE)
    for p in left:
        os.kill(p.pid, signal.SIGKILL)
    assert left == [], left
