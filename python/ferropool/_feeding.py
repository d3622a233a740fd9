"""Reading a map's input and handing it to the engine chunk by chunk.

    input ── islice(chunk) ── pickle ──▶ Engine.add_tasks(job, index, [payload])
                 │ input raised / chunk unpicklable
                 └──▶ local_errors[index] + Job.add_local_error(index)

`feed` is lazy: it keeps at most `Window.limit` chunks in the job's
read-ahead window (a chunk's place is freed when its consumer takes it, see
`Job.release`). `feed_all` reads everything at once, as the stdlib does.

As in the stdlib, a chunk that cannot be pickled fails at its own position
and the rest go on; an exception from the input fails the next position and
ends the input. Such failures never reach a worker: the exception stays in
`local_errors` and the job gets a placeholder outcome in its place.
"""

from __future__ import annotations

import itertools

from ._native import EngineStopped
from ._pickling import dumps_chunk

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Union

# feed_all hands chunks over in batches: the first of this many, then twice
# as many each time (the workers start while the rest is read), up to
# MAX_BATCH; a batch also goes once it holds BATCH_BYTES.
FIRST_BATCH = 4
MAX_BATCH = 1024
BATCH_BYTES = 64 * 1024
# A pickled chunk or result this large shrinks an adaptive window.
LARGE_PAYLOAD = 1 << 20
# An adaptive window grows only while every result is smaller than this.
SMALL_RESULT = 64 * 1024


def feeder_min_room(limit: int) -> int:
    """The feeder wakes only once this much of its window of `limit` chunks
    is free, then fills it: fewer thread switches than one per chunk."""
    return max(1, limit // 4)


class Window:
    """How many chunks a lazy map keeps in flight (sent and not yet
    consumed). A user's ``buffersize`` is fixed. The default is adaptive: it
    starts at `limit` and doubles, up to `most`, each time a window's worth
    of results has been consumed while all of them were small (the hand-offs
    between consumer, feeder, engine and workers then cost less than the
    tasks); once an input chunk or a result pickles to LARGE_PAYLOAD or more
    it drops to `large` for good (bounded memory)."""

    def __init__(self, limit: int, most: Optional[int] = None, large: Optional[int] = None):
        self.limit = limit
        self._most = limit if most is None else max(limit, most)
        self._large = large
        self._consumed = 0

    def saw_large_payload(self) -> bool:
        """Shrinks an adaptive window; returns whether the limit changed."""
        if self._large is None or self.limit <= self._large:
            self._most = self.limit
            return False
        self.limit = self._most = self._large
        return True

    def consumed(self, chunks: int, largest_result: int) -> None:
        """The consumer took `chunks` results, the largest pickled to
        `largest_result` bytes."""
        if largest_result >= LARGE_PAYLOAD:
            self.saw_large_payload()
        if self.limit >= self._most:
            return
        self._consumed += chunks
        if largest_result >= SMALL_RESULT:
            self._most = self.limit  # no growth once results are not small
        elif self._consumed >= self.limit:
            self.limit = min(self.limit * 2, self._most)
            self._consumed = 0


class _Reader:
    """Reads and pickles chunks; remembers failures at their position."""

    def __init__(
        self,
        job: Any,
        items: Iterator[Any],
        local_errors: Dict[int, BaseException],
        first_chunk: int = 0,
        first_item: int = 0,
    ) -> None:
        self.job = job
        self.items = items
        self.local_errors = local_errors
        self.index = first_chunk
        self.first_item = first_item
        self.exhausted = False

    def next_payload(self, size: int) -> Optional[bytes]:
        """The next chunk, pickled; None when it failed (recorded) or the
        input has ended (`exhausted`)."""
        try:
            chunk = list(itertools.islice(self.items, size))
        except Exception as e:
            self.fail(e)
            self.exhausted = True
            return None
        if not chunk:
            self.exhausted = True
            return None
        try:
            payload = dumps_chunk(chunk, self.first_item)
        except Exception as e:
            self.fail(e)
            payload = None
        else:
            self.index += 1
        self.first_item += len(chunk)
        return payload

    def fail(self, error: BaseException) -> None:
        self.local_errors[self.index] = error
        self.job.add_local_error(self.index)
        self.index += 1


def feed(
    engine: Any,
    job: Any,
    items: Iterator[Any],
    sizes: Iterator[int],
    window: Union[int, Window],
    local_errors: Dict[int, BaseException],
    on_stopped: Optional[Callable[[Callable[[BaseException], None]], None]] = None,
    first_chunk: int = 0,
    first_item: int = 0,
    in_memory: bool = False,
) -> None:
    """Reads a lazy map's input (chunk sizes from `sizes`): at most
    `window` chunks in flight (a number, or a `Window` read before each
    wait, shrunk here once a chunk pickles to a megabyte or more). When the job
    stops taking input before the input has ended (the pool stopped, the
    consumer gave up), `on_stopped` may record an error at the next position
    (it gets the function that records it). The input's first chunk is chunk
    `first_chunk` (item `first_item`) of the job: the ones before it were
    sent already.

    Input `in_memory` (a list, a range: reading it cannot block) is handed
    over a window's worth at a time; any other input chunk by chunk, so that
    a slow generator never holds back what it has already given."""
    reader = _Reader(job, items, local_errors, first_chunk, first_item)
    if not isinstance(window, Window):
        window = Window(window)

    def wait_room() -> int:
        # 0 once the job takes no more input (terminate, broken pool,
        # consumer gone): stop reading, even an endless input.
        return job.wait_room(window.limit, feeder_min_room(window.limit))

    try:
        room = wait_room()
        while room:
            batch: List[Any] = []
            batch_start = reader.index
            while room:
                room -= 1
                payload = reader.next_payload(next(sizes))
                if payload is None:
                    break  # the input ended, or this chunk failed (recorded)
                batch.append(payload)
                # Large chunks: fewer in flight (memory, recycled buffers).
                if len(payload) >= LARGE_PAYLOAD and window.saw_large_payload():
                    room = 0  # ask again, against the smaller window
                if not in_memory:
                    break
            if batch:
                try:
                    engine.add_tasks(job, batch_start, batch, False)
                except EngineStopped:
                    return  # the pool stopped; the job was failed there
            if reader.exhausted:
                return
            if not room:
                room = wait_room()
        if on_stopped is not None:
            on_stopped(reader.fail)
    finally:
        try:
            engine.add_tasks(job, reader.index, [], True)
        except EngineStopped:
            pass  # the pool stopped: the job was already failed


def feed_all(
    engine: Any,
    job: Any,
    items: Iterator[Any],
    chunksize: int,
    local_errors: Dict[int, BaseException],
) -> None:
    """Reads the whole input now, handing chunks over in growing batches."""
    reader = _Reader(job, items, local_errors)
    batch: List[bytes] = []
    batch_start = 0
    batch_bytes = 0
    batch_size = FIRST_BATCH
    try:
        while not reader.exhausted:
            start = reader.index
            payload = reader.next_payload(chunksize)
            if payload is not None:
                if not batch:
                    batch_start = start
                batch.append(payload)
                batch_bytes += len(payload)
            # A failure in between breaks the run of indices: send what came before.
            full = len(batch) >= batch_size or batch_bytes >= BATCH_BYTES
            if batch and (payload is None or full):
                try:
                    engine.add_tasks(job, batch_start, batch, False)
                except EngineStopped:
                    return  # the pool stopped; these tasks were failed there
                batch = []
                batch_bytes = 0
                batch_size = min(batch_size * 2, MAX_BATCH)
    finally:
        try:
            engine.add_tasks(job, batch_start, batch, True)
        except EngineStopped:
            pass  # the pool stopped: the job was failed there
