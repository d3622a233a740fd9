"""``Pool.stats()`` and ``ProcessPoolExecutor.stats()``: what each worker has
done (tasks, time spent on them, bytes of tasks and results), the workers
that ended and why, and the totals. The engine keeps the figures (see
src/engine/stats.rs); this module only presents them. Imported on the first
call: a short script that never asks does not pay for ``dataclasses``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional, Tuple

__all__ = ["EndedWorkerStats", "PoolStats", "WorkerStats"]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # not reached


def _work(tasks_done: int, busy_seconds: float, sent: int, received: int) -> str:
    return (
        f"{tasks_done} tasks, {busy_seconds:.2f} s busy, "
        f"{_size(sent)} sent, {_size(received)} received"
    )


@dataclass(frozen=True)
class WorkerStats:
    """A worker of the pool now."""

    number: int
    pid: Optional[int]  # None while it is being started
    state: str  # "starting", "ready" or "retiring"
    age_seconds: float
    tasks_done: int
    busy_seconds: float  # time its tasks ran
    bytes_sent: int  # pickled functions and tasks sent to it
    bytes_received: int  # results received from it
    address: Optional[str] = None  # a Dask worker's (ferropool.dask)

    def __repr__(self) -> str:
        work = _work(self.tasks_done, self.busy_seconds, self.bytes_sent, self.bytes_received)
        where = f" {self.address}" if self.address else ""
        return f"<worker {self.number}{where} pid {self.pid} {self.state}: {work}>"


@dataclass(frozen=True)
class EndedWorkerStats:
    """A worker that has ended: `why` in words ("retired", "stopped with
    the pool", "was killed by signal 9 (SIGKILL)", "ran past the task
    timeout", ...); `unexpected` when the pool had to replace it."""

    number: int
    pid: Optional[int]
    why: str
    unexpected: bool
    tasks_done: int
    busy_seconds: float
    bytes_sent: int
    bytes_received: int

    def __repr__(self) -> str:
        work = _work(self.tasks_done, self.busy_seconds, self.bytes_sent, self.bytes_received)
        return f"<ended worker {self.number} pid {self.pid}: {self.why}; {work}>"


@dataclass(frozen=True)
class PoolStats:
    """A pool's figures. The totals count every worker it has had; `ended`
    lists the latest 64 workers that ended (all are counted)."""

    workers: Tuple[WorkerStats, ...]
    ended: Tuple[EndedWorkerStats, ...]
    tasks_done: int
    busy_seconds: float
    bytes_sent: int
    bytes_received: int
    workers_started: int
    workers_ended: int
    unexpected_deaths: int

    @property
    def restarts(self) -> Dict[str, int]:
        """Why the listed workers were replaced without being asked to
        end, with how many times each."""
        return dict(collections.Counter(e.why for e in self.ended if e.unexpected))

    def __repr__(self) -> str:
        work = _work(self.tasks_done, self.busy_seconds, self.bytes_sent, self.bytes_received)
        lines = [
            f"PoolStats({len(self.workers)} workers: {work}; "
            f"{self.workers_started} started, {self.workers_ended} ended, "
            f"{self.unexpected_deaths} unexpectedly)"
        ]
        lines += [f"  {w!r}" for w in self.workers]
        lines += [f"  {e!r}" for e in self.ended]
        return "\n".join(lines)


def _build(cls: Any, raw: Dict[str, Any]) -> Any:
    return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


def from_engine(raw: Dict[str, Any]) -> PoolStats:
    """The engine's dict (``Engine.stats()``) as a PoolStats."""
    totals = raw["totals"]
    return PoolStats(
        workers=tuple(_build(WorkerStats, w) for w in raw["workers"]),
        ended=tuple(_build(EndedWorkerStats, e) for e in raw["ended"]),
        tasks_done=totals["tasks_done"],
        busy_seconds=totals["busy_seconds"],
        bytes_sent=totals["bytes_sent"],
        bytes_received=totals["bytes_received"],
        workers_started=raw["workers_started"],
        workers_ended=raw["workers_ended"],
        unexpected_deaths=raw["unexpected_deaths"],
    )
