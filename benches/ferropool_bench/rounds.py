"""Round cases: one row on one implementation as the bench process times it,
one round per ``round()`` call, always outside the bench process. A row
names its class (``Row.measure``), which ``Row.round_case`` makes per
implementation.

* ``ServedCase``: the pool, executor and cpu-bound rows (and the serial
  baseline): one case server (a fresh interpreter, ``server``) for all the
  rounds of the row, timed inside it;
* ``PayloadCase``: rows 5a, 5b: a fresh case server per round, giving the
  first payload call ("cold") and the calls after it ("warm");
* ``StartupCase``: rows 6: a fresh interpreter per round, timing pools
  created inside it (``adapters.run_probe``);
* ``ScriptCase``: rows 10: a whole script per round, run as a process and
  timed from here.
"""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from .adapters import NotAvailable, run_probe
from .server import COMMAND_TIMEOUT_S, CaseServer, ServerError, WrongResult
from .workloads import Config, Row

# Payload rows: the payload calls timed after the cold one in each round's
# fresh interpreter; their mean is the round's warm time.
PAYLOAD_WARM_CALLS = 2
# Start-up "repeated pools": pools timed in each round's interpreter after
# its first (untimed) one; their median is the round's time.
STARTUP_REPEATED_POOLS = 5
STARTUP_REPEATED_POOLS_QUICK = 2

# Point 1 of the performance issue: a short script, run as a process.
SCRIPT = """import {module} as mp


def sq(x):
    return x * x


if __name__ == "__main__":
    with mp.get_context({method!r}).Pool(2) as p:
        print(sum(p.map(sq, range(100))))
"""
SCRIPT_EXPECTED = str(sum(x * x for x in range(100)))  # 328350
# What the script imports as mp, per implementation (the others have no
# multiprocessing-style module).
SCRIPT_MODULES = {"ferropool": "ferropool", "stdlib": "multiprocessing", "billiard": "billiard"}


@dataclass
class Round:
    """One round's time; payload rows add the cold call's."""

    seconds: float
    cold: Optional[float] = None


class RoundCase:
    """Made per implementation (NotAvailable where it has no equivalent of
    the row: n/a); ``open`` prepares (untimed), ``round`` times one round,
    ``close`` releases, ``abort`` releases at once (an interrupted run);
    every method but ``abort`` may raise (NotAvailable: n/a). ``setup``:
    the seconds ``open`` took where the case knows them (a case server's)."""

    setup: Optional[float] = None

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        self.row, self.impl, self.cfg = row, impl, cfg

    @classmethod
    def rounds(cls, cfg: Config) -> int:
        """How many interleaved rounds a row of this kind runs."""
        return cfg.repeats

    def open(self) -> None:
        pass

    def round(self) -> Round:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()


class ServedCase(RoundCase):
    """Every round in one case server, opened here (untimed); the server runs
    the row's workload (``Row.work``), or its serial baseline ("serial")."""

    server: Optional[CaseServer] = None

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        super().__init__(row, impl, cfg)
        if row.work is None:
            raise ValueError(f"row {row.key} has no workload to serve")
        if impl != "serial":
            row.work.available(impl)

    def open(self) -> None:
        self.server = CaseServer(self.row, self.impl, self.cfg)
        self.server.start()
        self.setup = self.server.setup

    def round(self) -> Round:
        if self.server is None:
            raise ServerError("case not open")
        return Round(self.server.run())

    def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()

    def abort(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.kill()


class PayloadCase(ServedCase):
    """Large payloads (5a, 5b): every round in a fresh interpreter of its own
    (a case server opened, warmed up with small tasks only, and closed in
    the round). A big allocation changes the process's allocator for what
    runs after it: glibc returns freed 8 MiB blocks with munmap until its
    mmap threshold has risen, which the first big free does. So the first
    payload call of a process pays for fresh memory that later calls reuse
    (the "cold" time, a script's experience), and a process that ran
    another implementation's payloads first would run faster (measured
    before rows ran apart: the stdlib's 5b took 1.66 s alone, 1.01 s right
    after ferropool's in the same process). The round's main ("warm") time
    is the mean of the PAYLOAD_WARM_CALLS calls after the cold one."""

    def open(self) -> None:
        pass  # a server per round

    def round(self) -> Round:
        with CaseServer(self.row, self.impl, self.cfg) as server:
            cold = server.run()
            warm = [server.run() for _ in range(PAYLOAD_WARM_CALLS)]
        return Round(statistics.mean(warm), cold=cold)


class StartupCase(RoundCase):
    """Start-up (6): each round a fresh interpreter. "first pool": the first
    pool of that interpreter; "repeated pools": the median of the pools
    made after an untimed first one."""

    def round(self) -> Round:
        row = self.row
        if row.first:
            count = 1
        else:
            count = STARTUP_REPEATED_POOLS_QUICK if self.cfg.quick else STARTUP_REPEATED_POOLS
        times = run_probe(self.impl, row.method, row.first, count, COMMAND_TIMEOUT_S)
        return Round(statistics.median(times))


def _wait_exactly(proc: subprocess.Popen, timeout: float) -> int:
    """`proc.wait(timeout)`, returning as soon as the process ends: with a
    timeout, Popen.wait polls with sleeps of up to 50 ms, which would add up
    to 50 ms to a script's time (both implementations' rows 10 came out
    bimodal, 50 ms apart). A pidfd (Linux) becomes readable at the exit."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return proc.wait(timeout)
    try:
        fd = pidfd_open(proc.pid)
    except OSError:  # already reaped, or pidfds unsupported here
        return proc.wait(timeout)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


class ScriptCase(RoundCase):
    """The whole short script (10), written once to a directory of its own
    and run as a process per round; the wall time from here to its exit
    (standard output goes to a file: a pipe would also wait for any child
    still holding it)."""

    directory: Optional[str] = None

    def __init__(self, row: Row, impl: str, cfg: Config) -> None:
        super().__init__(row, impl, cfg)
        if impl not in SCRIPT_MODULES:
            raise NotAvailable(f"{impl}: no multiprocessing-style module to run the script")

    @classmethod
    def rounds(cls, cfg: Config) -> int:
        return cfg.script_rounds

    def open(self) -> None:
        module = SCRIPT_MODULES[self.impl]
        self.directory = tempfile.mkdtemp(prefix=f"ferropool-bench-{self.impl}-")
        self.path = os.path.join(self.directory, "short_script.py")
        with open(self.path, "w") as f:
            f.write(SCRIPT.format(module=module, method=self.row.method))

    def round(self) -> Round:
        assert self.directory is not None
        out_path = os.path.join(self.directory, "stdout.txt")
        err_path = os.path.join(self.directory, "stderr.txt")
        with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, self.path], stdout=out, stderr=err)
            try:
                code = _wait_exactly(proc, COMMAND_TIMEOUT_S)
            except BaseException as e:  # past the time limit, or interrupted
                proc.kill()
                proc.wait()
                if isinstance(e, subprocess.TimeoutExpired):
                    limit = f"{COMMAND_TIMEOUT_S:g} s"
                    raise ServerError(f"script did not end within {limit}") from None
                raise
            seconds = time.perf_counter() - t0
            out.seek(0)
            printed = out.read().decode(errors="replace").strip()
            err.seek(0)
            errors = err.read().decode(errors="replace").strip().splitlines()
        if code != 0:
            raise ServerError(f"script failed (exit {code}): {errors[-1] if errors else '?'}")
        if printed != SCRIPT_EXPECTED:
            raise WrongResult(f"the script printed {printed!r}, not {SCRIPT_EXPECTED}")
        return Round(seconds)

    def close(self) -> None:
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
