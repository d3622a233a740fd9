"""The case server: one case in a fresh interpreter of its own, timed on demand.

The bench process starts one server per row and implementation
(``CaseServer``): a fresh interpreter running ``serve``, given the row (its
workload included), the implementation and the configuration, pickled on its
command line. It opens the case (untimed, warm-up included) and answers
``ready``, with the seconds the pool took to open and warm up. Each ``run`` line on its
standard input then times one round there (``gc.collect`` before,
``perf_counter`` around ``Case.run``, ``Case.check`` after) and answers the
seconds, or the problem; ``close`` (or the end of its input) closes the case
and ends it. One JSON object per line comes back on the server's standard
output, and nothing else: everything else the server, a library or a forked
worker writes to its fd 1 goes to its standard error instead.

So every implementation runs in an interpreter that has run nothing else
(no other implementation's pool, imports or allocator state in it), while
the rounds still interleave across implementations.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, NoReturn, Optional, Sequence

from .adapters import NotAvailable, child_env
from .workloads import Config, Row

# A generous limit for one command (start and open included): a server that
# takes longer is taken for hung, killed, and its cell becomes an error.
COMMAND_TIMEOUT_S = 600.0


class ServerError(Exception):
    """The server failed, died or hung; the message says how (and, where it
    died, the last line of its standard error)."""


class WrongResult(Exception):
    """A round returned a wrong result (the report's WRONG)."""


class ServerNotAvailable(NotAvailable):
    """The server's implementation has no equivalent of the row (n/a)."""


# ---------------------------------------------------------------------------
# In the server.


def serve(argv: Optional[Sequence[str]] = None) -> None:
    """The server's main: ``argv[0]`` is the spec ``CaseServer`` writes (the
    rest names the row for a reader of the process list)."""
    arg = (sys.argv[1:] if argv is None else argv)[0]
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    # fd 1 becomes a copy of fd 2, so that stray output cannot be taken for
    # an answer (a forked worker inherits this fd 1 too).
    os.dup2(2, 1)

    def answer(**fields: Any) -> None:
        answers.write(json.dumps(fields) + "\n")

    from .cases import make_case  # after the redirection: imports may print

    row, impl, cfg = pickle.loads(base64.b64decode(arg))
    try:
        case = make_case(row, impl, cfg)
        case.open()
    except NotAvailable as e:
        answer(na=str(e))
        return
    except Exception as e:
        answer(error=f"{type(e).__name__}: {e}")
        return
    answer(ready=True, setup=case.setup)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command != "run":
                break  # "close", or anything unknown
            try:
                gc.collect()
                t0 = time.perf_counter()
                result = case.run()
                seconds = time.perf_counter() - t0
                problem = case.check(result)
                del result
            except Exception as e:
                answer(error=f"{type(e).__name__}: {e}")
                continue
            answer(seconds=seconds, problem=problem)
    finally:
        case.close()
    answer(closed=True)


# ---------------------------------------------------------------------------
# In the bench process.


def spec_arg(row: Row, impl: str, cfg: Config) -> str:
    """What a server is given: pickled, since the row carries its workload
    (module-level classes, imported by name in the server)."""
    return base64.b64encode(pickle.dumps((row, impl, cfg))).decode()


class CaseServer:
    """The bench process's end of one case server. ``start`` launches it and
    waits until its case is open; ``run`` times one round; ``close`` ends
    it. Any failure (an error answer, a death, a command past
    ``timeout``) kills the server and everything it started, and raises
    ``ServerError``; n/a raises ``ServerNotAvailable``."""

    def __init__(
        self, row: Row, impl: str, cfg: Config, timeout: float = COMMAND_TIMEOUT_S
    ) -> None:
        self.row, self.impl, self.cfg, self.timeout = row, impl, cfg, timeout
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._stderr: Any = None
        self._buffer = b""
        # Seconds the server's case took to make its pool and warm it up.
        self.setup: Optional[float] = None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        code = "from ferropool_bench.server import serve; serve()"
        # Standard error goes to a file: a pipe nobody reads could fill and
        # stall the server; the file's last line names a death's cause.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                spec_arg(self.row, self.impl, self.cfg),
                self.row.key,
                self.impl,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env(),
            # A group of its own: a failure kills the server with its
            # workers (and a terminal's Ctrl-C reaches the bench process only).
            start_new_session=True,
        )
        reply = self._read_answer("start")
        if "na" in reply:
            self.kill()
            raise ServerNotAvailable(reply["na"])
        if not reply.get("ready"):
            self._fail("start", reply)
        self.setup = reply.get("setup")

    def run(self) -> float:
        """One timed round: its seconds; ``ServerError`` if it failed. A
        wrong result raises ``WrongResult``."""
        self._send("run")
        reply = self._read_answer("run")
        if "seconds" not in reply:
            self._fail("run", reply)
        if reply.get("problem"):
            raise WrongResult(reply["problem"])
        return float(reply["seconds"])

    def close(self) -> None:
        """Closes the case and waits for the server's end; kills it (and
        what it left running) in any case. Safe to call more than once."""
        if self.proc is None:
            return
        try:
            if self._exit_status() is None:
                self._send("close")
                reply = self._read_answer("close")
                if not reply.get("closed"):
                    self._fail("close", reply)
                deadline = time.monotonic() + self.timeout
                while self._exit_status() is None:
                    if time.monotonic() > deadline:
                        self._fail("close", {}, "server did not exit after close")
                    time.sleep(0.005)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kills the server's process group (its workers, and anything they
        left) and reaps the server. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            # The group is killed before the server is reaped: until then
            # its pid (the group's id) cannot be reused.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _exit_status(self) -> Optional[int]:
        """The server's exit status once it has ended (negative: the signal),
        else None; it is not reaped (see ``kill``) where the platform allows."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        if not hasattr(os, "waitid"):
            return proc.poll()
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return proc.poll()
        if info is None:
            return None
        if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return -info.si_status
        return int(info.si_status)

    def __enter__(self) -> CaseServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.kill()

    # -- the protocol --------------------------------------------------------

    def _send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self._fail(command, {})

    def _read_answer(self, command: str) -> Dict[str, Any]:
        """The next answer line, within the timeout. A death fails at once:
        the server's forked workers may hold its answer pipe open, so the
        pipe's end cannot be waited for."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(command, {}, f"no answer within {self.timeout:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.25))
            if not ready:
                if self._exit_status() is not None:
                    self._fail(command, {})
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._fail(command, {})
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def _fail(self, command: str, reply: Dict[str, Any], why: str = "") -> NoReturn:
        """Kills the server and raises ServerError with the best reason
        known: its error answer, else how it ended and its last stderr
        line."""
        exit_code = self._exit_status()
        deadline = time.monotonic() + 1.0
        while exit_code is None and not why and time.monotonic() < deadline:
            # Its answer pipe ended: the server is ending (or has closed its
            # fd 1 and may hang, which the kill below settles).
            time.sleep(0.01)
            exit_code = self._exit_status()
        stderr_tail = self._stderr_tail()
        self.kill()
        if reply.get("error"):
            raise ServerError(reply["error"])
        if not why:
            why = "server stopped answering" if exit_code is None else "server died"
            if exit_code is not None:
                why += f" (exit {exit_code})"
        tail = f": {stderr_tail}" if stderr_tail else ""
        raise ServerError(f"{why} during {command!r}{tail}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4096))
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""
