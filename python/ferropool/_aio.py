"""``await`` on a Pool's results and ``async for`` over its ``imap``
iterators, without blocking the event loop and without a thread per waiter.

An awaited job announces its outcomes to the pool's service thread (see
``Job.announce_outcomes``), which wakes the event loops waiting on it with
``call_soon_threadsafe``; the waiting task then takes what arrived, without
blocking, in the loop's thread.
"""

from __future__ import annotations

import threading

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple


class Waiters:
    """Event loops waiting for news of jobs, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_job: Dict[int, List[Tuple[Any, Any]]] = {}

    def add(self, job_id: int, loop: Any, future: Any) -> None:
        with self._lock:
            self._by_job.setdefault(job_id, []).append((loop, future))

    def wake(self, job_id: int) -> None:
        """The service thread has news of the job: every loop waiting on it
        looks again."""
        if not self._by_job:
            return  # nobody awaits anything: the common case, no lock
        with self._lock:
            waiting = self._by_job.pop(job_id, None)
        for loop, future in waiting or ():
            try:
                loop.call_soon_threadsafe(_set_done, future)
            except RuntimeError:
                pass  # that loop is closed: nobody is left to wake


def _set_done(future: Any) -> None:
    if not future.done():  # cancelled meanwhile: the task is gone
        future.set_result(None)


async def until(waiters: Waiters, job: Any, ready: Callable[[], bool]) -> None:
    """Returns once `ready()`, looked at again after each news of `job`."""
    import asyncio

    loop = asyncio.get_running_loop()
    while not ready():
        future = loop.create_future()
        waiters.add(job.id, loop, future)
        job.announce_outcomes()
        if ready():  # the news came before the loop was registered
            return
        await future
