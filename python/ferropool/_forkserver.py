"""The forkserver start method: one fork server per parent process, as the
stdlib's, so only the first forkserver pool pays for a fresh interpreter.

    parent ── request (setup, fds: zygote socket + setup fds) ──▶ fork server
    fork server ──fork──▶ the pool's zygote (zygote_loop) ──fork──▶ workers
    fork server ── the zygote's pid ──▶ parent

The server is a fresh interpreter that imports ``__main__`` once (the
stdlib's preloading). Each pool gets a zygote of its own, forked from the
server, that talks to the pool's engine exactly as a fork pool's zygote does;
the server only forks zygotes and reaps them. It exits when the parent's end
of its socket closes (the parent exited, even by SIGKILL), and every zygote
exits when its own pool's socket closes, so nothing outlives the parent.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing import process, spawn

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

LENGTH = struct.Struct("<Q")
# Most fds one request carries (the zygote's socket and the setup's fds).
MAX_FDS = 64
# Keys of the preparation data applied per pool in its zygote (the main
# module itself is imported once, by the server, as the stdlib does).
PER_POOL_KEYS = ("sys_path", "sys_argv", "dir", "authkey", "log_to_stderr", "log_level")


class _Server:
    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.owner = os.getpid()

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def stop(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_lock = threading.Lock()
_server: Optional[_Server] = None


def _forget_inherited_server() -> None:
    """In the child of a fork (a `fork` pool's worker, a plain `os.fork()`):
    the fork server is the parent's. Its socket is close-on-exec already (as
    every socket Python makes), but a fork keeps it: closed here, so that no
    task in the child can send the server requests."""
    global _server
    if _server is not None:
        try:
            _server.sock.close()
        except OSError:
            pass
        _server = None


os.register_at_fork(after_in_child=_forget_inherited_server)


def _start_server(prepare: bytes) -> _Server:
    ours, theirs = socket.socketpair()
    with theirs:
        code = f"from ferropool._forkserver import serve; serve({theirs.fileno()})"
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        argv = [os.fsdecode(spawn.get_executable()), *flags, "-c", code]
        proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()])
    try:
        _send_blob(ours, prepare, [])
    except BaseException:
        ours.close()
        proc.kill()
        proc.wait()
        raise
    return _Server(proc, ours)


def _server_for(prepare: bytes) -> _Server:
    global _server
    if _server is not None and not _server.alive():
        _server.stop()
        _server = None
    if _server is None:
        _server = _start_server(prepare)
    return _server


SERVER_DIED = (
    "the forkserver process exited before it could start this pool's workers (its stderr "
    "says why); if the main module starts a pool when it is imported, put that code under "
    '`if __name__ == "__main__":`'
)


def start_zygote(
    server_prepare: bytes, pool_prepare: bytes, setup_bytes: bytes, fds: List[int]
) -> Tuple[socket.socket, int]:
    """Asks the fork server for a zygote for one pool; returns the pool's end
    of the zygote's control socket and the zygote's pid. The server is started on first use with
    `server_prepare` (pickled preparation data); `pool_prepare` (the same,
    only `PER_POOL_KEYS`) is applied in the zygote."""
    prepare = server_prepare
    ours, theirs = socket.socketpair()
    blob = pickle.dumps((pool_prepare, setup_bytes))
    try:
        with theirs, _lock:
            server = _server_for(prepare)
            try:
                _send_blob(server.sock, blob, [theirs.fileno(), *fds])
                reply = _recv_exact(server.sock, LENGTH.size)
            except OSError:
                # The server died (killed by someone): one fresh try.
                server.stop()
                server = _server_for(prepare)
                try:
                    _send_blob(server.sock, blob, [theirs.fileno(), *fds])
                    reply = _recv_exact(server.sock, LENGTH.size)
                except OSError as e:
                    raise OSError(SERVER_DIED) from e
            pid = LENGTH.unpack(reply)[0]
            if pid == 0:
                raise OSError("the fork server could not fork a zygote for the pool")
    except BaseException:
        ours.close()
        raise
    return ours, pid


def exit_waiter(pid: int) -> Callable[[], None]:
    """A function that waits (a few seconds at most) until process `pid`, a
    zygote (not our child, so no waitpid), has exited. The zygote cannot exit
    before its pool's socket closes, so the pid is still its own here."""
    from . import _native

    lock = threading.Lock()  # the service thread and the caller may both wait
    if _native.platform_features()["pidfd"] != "native":
        return _poll_exit(pid, lock)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return _poll_exit(pid, lock)

    open_fd = [pidfd]

    def wait() -> None:
        with lock:
            if open_fd:
                try:
                    select.select(open_fd, [], [], 5.0)
                finally:
                    os.close(open_fd.pop())

    return wait


def _poll_exit(pid: int, lock: threading.Lock) -> Callable[[], None]:
    """`exit_waiter` without pidfds: asks every 10 ms whether `pid` still
    exists (the fork server reaps the zygote at once). Were the pid reused
    meanwhile, this only waits longer (5 s at most); it signals nothing."""
    done = [False]

    def wait() -> None:
        with lock:
            deadline = time.monotonic() + 5.0
            while not done[0] and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except OSError:
                    break  # not ours to signal: someone else's process now
                time.sleep(0.01)
            done[0] = True

    return wait


@atexit.register
def _stop_server() -> None:
    global _server
    with _lock:
        if _server is not None and _server.owner == os.getpid():
            _server.stop()
        _server = None


# ----- framing: a length, a pickled blob, fds alongside -----------------------


def _send_blob(sock: socket.socket, blob: bytes, fds: List[int]) -> None:
    data = LENGTH.pack(len(blob)) + blob
    sent = socket.send_fds(sock, [data], fds) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def _recv_blob(sock: socket.socket) -> tuple[Any, ...]:
    """(blob, fds); blob is empty when the other end closed."""
    head, fds, _, _ = socket.recv_fds(sock, LENGTH.size, MAX_FDS)
    if not head:
        return b"", fds
    head += _recv_exact(sock, LENGTH.size - len(head))
    return _recv_exact(sock, LENGTH.unpack(head)[0]), fds


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("ferropool fork server: the other end went away")
        buf += chunk
    return bytes(buf)


# ----- the server process ------------------------------------------------------


def serve(fd: int) -> None:
    """Entry point of the fork server: prepares ``__main__`` once, then forks a
    zygote for every request until the parent goes away."""
    from ._worker import _finish, drain

    # No parent-death signal here: it would follow the parent *thread* that
    # started the server; the server exits on EOF from the parent instead.
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    blob, _ = _recv_blob(sock)
    if not blob:
        _finish(0)
    process.current_process()._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.prepare(pickle.loads(blob))
    finally:
        process.current_process()._inheriting = False  # type: ignore[attr-defined]
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        while True:
            try:
                readable, _, _ = select.select([sock, wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in readable:
                drain(wake_r)
                _reap_zygotes()
            if sock in readable:
                blob, fds = _recv_blob(sock)
                if not blob:
                    break  # the parent went away
                pid = _fork_zygote(blob, fds, (sock, wake_r, wake_w))
                sock.sendall(LENGTH.pack(pid))
    except (OSError, EOFError):
        pass
    _finish(0)


def _reap_zygotes() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_zygote(blob: bytes, fds: List[int], server_socks: Any) -> int:
    """Forks the zygote of one pool; returns its pid (0 if the fork failed)."""
    from ._worker import _finish, _inherited_fds, zygote_loop

    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid != 0:
        for fd in fds:
            os.close(fd)
        return max(pid, 0)
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for s in server_socks:
            s.close()
        prepare, setup_bytes = pickle.loads(blob)
        ctl = socket.socket(fileno=fds[0])
        process.current_process()._inheriting = True  # type: ignore[attr-defined]
        try:
            spawn.prepare(pickle.loads(prepare))
            _inherited_fds[:] = fds[1:]
            setup = pickle.loads(setup_bytes)
        finally:
            process.current_process()._inheriting = False  # type: ignore[attr-defined]
        zygote_loop(ctl, setup, forked_from_parent=True)
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        _finish(code)
    return 0  # not reached: _finish exits
