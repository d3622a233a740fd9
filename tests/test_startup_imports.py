"""What a short script pays for at start-up: importing ferropool and running
a Pool must not pull in modules that neither it nor the stdlib's own Pool
needs (each costs milliseconds of every short script's wall time, and of
every spawned worker's start). The engine's log lines still reach
`logging` when something could show them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from _support import METHODS, run_script

# Modules a Pool that raised nothing has no use for. typing, logging,
# concurrent.futures, subprocess: ferropool's own needs only on error paths
# or other start methods; multiprocessing.pool and .connection: the stdlib's
# Pool machinery, which ferropool replaces.
NOT_NEEDED = [
    "typing",
    "logging",
    "traceback",
    "concurrent.futures",
    "multiprocessing.pool",
    "multiprocessing.connection",
    "multiprocessing.queues",
]
# spawn and forkserver start interpreters (subprocess) and send the main
# module's preparation data (multiprocessing.spawn) as the stdlib does.
NOT_NEEDED_FORK = NOT_NEEDED + ["subprocess", "multiprocessing.spawn", "multiprocessing.util"]


def imported_by_stdlib_spawning(watched: list) -> list:
    """Which of `watched` the stdlib's own spawn machinery imports: its
    preparation data (multiprocessing.spawn, and importlib.util with it) in
    the parent, and in a fresh worker the main module's path run through
    runpy (whose pkgutil imports typing). ferropool's spawn and forkserver
    use the same, as every stdlib worker does."""
    code = (
        "import json, sys, multiprocessing.spawn, pkgutil; "
        f"print(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ferropool

    WATCHED = json.loads(sys.argv[2])

    def loaded(watched=WATCHED):
        return sorted(m for m in watched if m in sys.modules)

    def square(x):
        return x * x

    if __name__ == "__main__":
        with ferropool.get_context(sys.argv[1]).Pool(2) as pool:
            assert sum(pool.map(square, range(100))) == 328350
            in_worker = pool.apply(loaded, (json.loads(sys.argv[3]),))
        print(json.dumps({"parent": loaded(), "worker": in_worker}))
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_short_pool_script_imports_only_what_it_needs(tmp_path, method):
    if method == "fork":
        in_parent = in_worker = NOT_NEEDED_FORK
    else:
        stdlib_own = imported_by_stdlib_spawning(NOT_NEEDED)
        in_parent = in_worker = [m for m in NOT_NEEDED if m not in stdlib_own]
    proc = run_script(tmp_path, SCRIPT, method, json.dumps(in_parent), json.dumps(in_worker))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    found = json.loads(proc.stdout)
    assert found == {"parent": [], "worker": []}


LOG_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import ferropool

    def die(_):
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        pool = ferropool.get_context(sys.argv[1]).Pool(1)
        try:
            pool.apply(die, (0,))
        except ferropool.WorkerLostError:
            print("lost", flush=True)
        pool.close()
        pool.join()
        print("logging" in sys.modules, flush=True)
    """
)


@pytest.mark.timeout(60)
def test_a_warning_from_the_engine_is_logged_without_logging_imported_first(tmp_path):
    # Nothing imported `logging`: the engine's warning about the killed worker
    # still reaches logging's default handler (stderr), as a warning logged
    # from Python would.
    proc = run_script(tmp_path, LOG_SCRIPT, "fork")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["lost", "True"]
    assert "killed by signal 9" in proc.stderr or "SIGKILL" in proc.stderr, proc.stderr


QUIET_CLOSE_LOGGED = textwrap.dedent(
    """
    import logging, sys
    import ferropool

    if __name__ == "__main__":
        pool = ferropool.Pool(2)
        # Configured after the pool started: the "worker exited" lines of the
        # close below are below WARNING and still reach the handler.
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")
        assert pool.map(abs, [-1, -2]) == [1, 2]
        pool.close()
        pool.join()
    """
)


@pytest.mark.timeout(60)
def test_debug_lines_reach_logging_configured_after_the_pool_started(tmp_path):
    proc = run_script(tmp_path, QUIET_CLOSE_LOGGED)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("exited") == 2, proc.stdout
    assert all(line.startswith("ferropool ") for line in proc.stdout.splitlines())
