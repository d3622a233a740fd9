"""What ``Pool`` and ``ProcessPoolExecutor`` share from start to stop, written
once for both:

    _launch.start_engine ──▶ Running ── serve(on_news) ──▶ service thread
                                 │                          (job news, forks)
                                 ├── stop_now()      the owner could not be made
                                 └── wait_stopped()  engine ended, thread joined,
                                                     helper processes reaped

plus `Ownership` (a pool or executor used in a forked child is refused) and
`ExitRegistry` (owners still running at interpreter exit are stopped).
"""

from __future__ import annotations

import os
import threading
import weakref

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

    # (worker number, socket fd, fd of the engine's end), see _launch.
    ForkRequests = List[Tuple[int, int, int]]

# Bumped in the child of every fork: a pool or executor made before it
# belongs to the parent (its engine thread and service thread do not exist in
# the child), so the child neither uses nor waits for it.
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


class Ownership:
    """Which process a pool or executor belongs to."""

    __slots__ = ("generation", "pid")

    def __init__(self) -> None:
        self.generation = _fork_generation
        self.pid = os.getpid()

    def foreign(self) -> bool:
        """This process is a fork of the owner (or of a fork of it)."""
        return self.generation != _fork_generation

    def refuse(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"this {what} belongs to process {self.pid}; a process forked from it cannot "
            f"use it (make a new one in the child)"
        )


def _nothing() -> None:
    pass


class Running:
    """A running engine and what its owner (a Pool or an executor's core)
    needs to serve it and to stop it."""

    def __init__(
        self,
        engine: Any,
        reap: Callable[[], None],
        serve_forks: Callable[[ForkRequests], None],
        wait_first: Callable[[], None] = _nothing,
    ) -> None:
        self.engine = engine
        # Waits for helper processes (the forkserver zygote) after the engine finished.
        self.reap = reap
        # Forks the workers a `fork` engine asks for (service thread); other
        # engines never ask, and a request is refused by closing its socket.
        self.serve_forks = serve_forks
        # Blocks until the pool's first workers exist (see _launch._Forker).
        self.wait_first = wait_first
        self.service: Optional[threading.Thread] = None

    def serve(self, on_news: Callable[[int], None], name: str) -> None:
        """Starts the service thread, then waits for the first workers; if
        either fails or is interrupted (Ctrl-C), everything started is
        stopped (see `stop_now`) before the error goes on.

        The service thread calls `on_news(job_id)` for each job the engine
        has news for, as they come, and forks the workers a `fork` engine
        asks for; once the engine has ended it reaps the helper processes
        (nobody may join it: an owner dropped without closing). `on_news`
        must not hold the owner (a bound method of the state the owner
        shares with it), so that an owner nobody holds is collected."""
        try:
            self.service = threading.Thread(
                target=_service_main,
                args=(self.engine, self.serve_forks, self.reap, on_news),
                name=name,
                daemon=True,
            )
            self.service.start()
            self.wait_first()
        except BaseException:
            self.stop_now()
            raise

    def stop_now(self) -> None:
        """The owner could not be made (its constructor failed or was
        interrupted, Ctrl-C included): stop the engine and everything it
        started, so no thread or worker outlives the attempt."""
        self.engine.terminate(True)
        self.wait_stopped()

    def wait_stopped(self) -> None:
        """Waits until the engine has ended, the service thread included
        (unless it is the caller), and the helper processes are gone."""
        self.engine.wait_finished()
        service = self.service
        if service is not None and service.ident is not None:
            if service is not threading.current_thread():
                service.join()
        self.reap()


# Marks the service threads (see in_service_thread).
_this_thread = threading.local()


def in_service_thread() -> bool:
    """Whether the calling thread is a pool's or executor's service thread."""
    return getattr(_this_thread, "is_service", False)


def _service_main(
    engine: Any,
    serve_forks: Callable[[ForkRequests], None],
    reap: Callable[[], None],
    on_news: Callable[[int], None],
) -> None:
    _this_thread.is_service = True
    while True:
        # The engine's log lines are forwarded on the way (in service_next).
        events = engine.service_next()
        if events is None:
            break  # the engine has ended
        jobs, forks = events
        serve_forks(forks)
        for job_id in dict.fromkeys(jobs):
            try:
                on_news(job_id)
            except BaseException:
                # This thread also forks the workers and serves every other
                # job: it must go on.
                import logging

                logging.getLogger("ferropool").exception(
                    "ferropool: serving the news of job %d failed", job_id
                )
    reap()


class ExitRegistry:
    """Owners (pools, executor cores) that may still be running, stopped at
    interpreter exit by `stop_all` in two passes: every owner is asked to
    stop (its `_stop_at_exit`), then each is waited for (its `_wait_at_exit`), so
    several pools stop side by side. Held weakly: an owner that was
    collected has stopped already. `exiting` is set once `stop_all` began."""

    def __init__(self) -> None:
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.exiting = False

    def add(self, owner: Any) -> None:
        self.live.add(owner)

    def discard(self, owner: Any) -> None:
        self.live.discard(owner)

    def stop_all(self) -> None:
        self.exiting = True
        owners = list(self.live)
        for owner in owners:
            try:
                owner._stop_at_exit()
            except Exception:
                pass  # one owner's failure must not keep the others running
        for owner in owners:
            try:
                owner._wait_at_exit()
            except Exception:
                pass


# Pools are stopped by an `atexit` hook (pool.py), as the stdlib's: at that
# point a daemon thread waiting on one of them must stay asleep (see
# _pool_results). Executors finish their work before `atexit` hooks run
# (executor.py), as the stdlib's do.
pools_at_exit = ExitRegistry()
executors_at_exit = ExitRegistry()
