"""Dask clusters for the tests of ferropool.dask, started once per session:
one with Dask's own command-line programs (`dask scheduler`, two `dask
worker`s, on 127.0.0.1 only), and a `LocalCluster`. Their workers find the
tests' helper modules through PYTHONPATH (the CLI's) or the parent's
sys.path (the LocalCluster's spawned workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from _support import child_env

WORKERS = 2
START_TIMEOUT = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CliCluster:
    """`dask scheduler` and WORKERS `dask worker`s (one thread each, behind
    their nannies), as separate processes."""

    def __init__(self) -> None:
        from distributed import Client

        self.address = f"tcp://127.0.0.1:{_free_port()}"
        port = self.address.rsplit(":", 1)[1]
        env = child_env()
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dask",
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--no-dashboard",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        ]
        for i in range(WORKERS):
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "dask",
                        "worker",
                        self.address,
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--name",
                        f"cli-{i}",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        try:
            self.client = Client(self.address, timeout=START_TIMEOUT, set_as_default=False)
            self.client.wait_for_workers(WORKERS, timeout=START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        for p in reversed(self.processes):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


class InProcessCluster:
    """A `LocalCluster` of WORKERS single-threaded worker processes."""

    def __init__(self) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        self.client = Client(self.cluster, set_as_default=False)
        self.address = self.cluster.scheduler_address

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def worker_pids(client) -> dict:
    """Dask worker address -> pid of that worker process."""
    return client.run(os.getpid)
