"""Tasks that attack the parent from inside a worker, by writing frames of
their own onto the worker's real socket (importable by spawn and forkserver
workers by name). The wire format is the engine's (src/engine/protocol.rs): a
26-byte header `<u64 len><u8 kind><u8 flags><u64 job><u64 index>`, `len`
counting everything after itself."""

from __future__ import annotations

import os
import socket
import stat
import struct
import time

from ferropool import _native

READY = _native.KIND_READY
RESULT = _native.KIND_RESULT
SHARED_PAYLOAD = _native.SHARED_PAYLOAD  # the kind byte's bit: the payload is in a memfd sent along
HEADER = struct.Struct("<QBBQQ")
LEN_FIELD = 8

if HEADER.size != _native.HEADER_LEN:
    raise RuntimeError(f"the engine's header is {_native.HEADER_LEN} bytes, not {HEADER.size}")
PEERCRED = struct.Struct("3i")


def frame(kind: int, flags: int, job: int, index: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(HEADER.size - LEN_FIELD + len(payload), kind, flags, job, index) + payload


def sockets_to(parent_pid: int) -> list:
    """The fds of this process's Unix sockets made by `parent_pid` (a
    socketpair reports its creator as the peer): the worker's channel is
    among them."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            if sock.family != socket.AF_UNIX:
                continue
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
            if PEERCRED.unpack(creds)[0] == parent_pid:
                found.append(fd)
    return found


def forge(parent_pid: int, data: bytes) -> int:
    """Writes `data` onto every open socket to the parent; returns how many."""
    sent = 0
    for fd in sockets_to(parent_pid):
        try:
            os.write(fd, data)
            sent += 1
        except OSError:
            pass  # a socket inherited from an earlier pool, closed at the other end
    return sent


def forge_ready(parent_pid: int, claimed_pid: int) -> int:
    """A Ready frame claiming that this worker is process `claimed_pid`."""
    return forge(parent_pid, frame(READY, 0, 0, claimed_pid & 0xFFFFFFFFFFFFFFFF))


def forge_ready_then_sleep(parent_pid: int, claimed_pid: int, seconds: float) -> int:
    sent = forge_ready(parent_pid, claimed_pid)
    time.sleep(seconds)
    return sent


def forge_result(parent_pid: int, job: int, index: int, status: int, value) -> int:
    """A well-formed Result frame for a task of the forger's choosing."""
    import pickle

    return forge(parent_pid, frame(RESULT, status, job, index, pickle.dumps(value)))


def forge_partial_then_sleep(parent_pid: int, how: str, seconds: float) -> int:
    """Begins a frame and never finishes it: 10 header bytes, a header and
    3 payload bytes, a header announcing 2 GiB, or one announcing more than
    any memory (2**62 bytes, and the largest length there is)."""
    if how == "header_only":
        data = frame(RESULT, 0, 1, 0, b"xyz")[:10]
    elif how == "three_bytes":
        data = frame(RESULT, 0, 1, 0, b"x" * 100)[: HEADER.size + 3]
    elif how == "two_gib_length":
        data = HEADER.pack(1 << 31, RESULT, 0, 1, 0) + b"abc"
    elif how == "beyond_memory":
        data = HEADER.pack(1 << 62, RESULT, 0, 1, 0) + b"abc"
    else:
        data = HEADER.pack((1 << 64) - 1, RESULT, 0, 1, 0) + b"abc"
    sent = forge(parent_pid, data)
    time.sleep(seconds)
    return sent


def fds_of_socket(inode: int) -> list:
    """This process's fds that are the socket with this inode."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.fstat(int(name))
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_ino == inode:
            found.append(int(name))
    return found


def start_session() -> tuple:
    """os.setsid() in a task: (the new session id, the worker's pid)."""
    os.setsid()
    return os.getsid(0), os.getpid()



def forge_shared_result(parent_pid: int, job: int, index: int, how: str) -> int:
    """A Result frame for task `index` of `job` whose payload is announced as
    shared memory, with a descriptor that is wrong in the way `how` names
    (or right: "sealed", a well-formed one holding the pickle of "forged")."""
    import fcntl
    import pickle

    data = pickle.dumps("forged")
    length = len(data)
    fd = None
    if how == "pipe":
        fd, _w = os.pipe()
    elif how in ("unsealed", "sealed", "short", "sparse", "writable"):
        fd = os.memfd_create("forged", os.MFD_ALLOW_SEALING)
        if how == "sparse":
            length = 1 << 20
            os.ftruncate(fd, length)
        else:
            os.write(fd, data)
        if how == "short":
            length = 1 << 20
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        if how == "writable":
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
        if how != "unsealed":
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    head = frame(RESULT | SHARED_PAYLOAD, 0, job, index, struct.pack("<Q", length))
    if how == "bad_length":
        head = frame(RESULT | SHARED_PAYLOAD, 0, job, index, b"abc")
    sent = 0
    for sock_fd in sockets_to(parent_pid):
        sock = socket.socket(fileno=os.dup(sock_fd))
        with sock:
            try:
                if fd is None:
                    sock.sendall(head)
                else:
                    socket.send_fds(sock, [head], [fd])
                sent += 1
            except OSError:
                pass
    if how == "sealed":
        # Believed: this task is done, so its own result would be one for a
        # task it is not running. It ends instead.
        os._exit(0)
    time.sleep(0.5)  # the forged frame is read before this task's own result
    return sent


def flood_descriptors(parent_pid: int, count: int) -> int:
    """`count` messages of one byte each with a descriptor, then nothing: a
    try at filling the parent's descriptor table."""
    r, _w = os.pipe()
    sent = 0
    for sock_fd in sockets_to(parent_pid):
        sock = socket.socket(fileno=os.dup(sock_fd))
        with sock:
            try:
                for _ in range(count):
                    socket.send_fds(sock, [b"\0"], [r])
                sent += 1
            except OSError:
                pass
    time.sleep(0.5)
    return sent
