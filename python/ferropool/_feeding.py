"""Reading a map's input and handing it to the engine chunk by chunk.

    input ── islice(chunk) ── pickle ──▶ Engine.add_tasks(job, index, [payload])
                 │ input raised / chunk unpicklable
                 └──▶ local_errors[index] + Job.add_local_error(index)

`feed` is lazy: it keeps at most `limit` chunks in the job's read-ahead
window (a chunk's place is freed when its consumer takes it, see
`Job.release`). `feed_all` reads everything at once, as the stdlib does.

As in the stdlib, a chunk that cannot be pickled fails at its own position
and the rest go on; an exception from the input fails the next position and
ends the input. Such failures never reach a worker: the exception stays in
`local_errors` and the job gets a placeholder outcome in its place.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional

from ._pickling import dumps_chunk

# feed_all hands chunks over in batches: the first of this many, then twice
# as many each time (the workers start while the rest is read), up to
# MAX_BATCH; a batch also goes once it holds BATCH_BYTES.
FIRST_BATCH = 4
MAX_BATCH = 1024
BATCH_BYTES = 64 * 1024
# A pickled chunk this large makes feed() shrink its window to `large_limit`.
LARGE_PAYLOAD = 1 << 20


def feeder_min_room(limit: int) -> int:
    """The feeder wakes only once this much of its window of `limit` chunks
    is free, then fills it: fewer thread switches than one per chunk."""
    return max(1, limit // 4)


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
    limit: int,
    local_errors: Dict[int, BaseException],
    on_stopped: Optional[Callable[[Callable[[BaseException], None]], None]] = None,
    first_chunk: int = 0,
    first_item: int = 0,
    in_memory: bool = False,
    large_limit: Optional[int] = None,
    on_new_limit: Optional[Callable[[int], None]] = None,
) -> None:
    """Reads a lazy map's input (chunk sizes from `sizes`): at most `limit`
    chunks in flight; at most `large_limit` once a chunk pickles to a
    megabyte or more (then `on_new_limit(limit)` is called). When the job
    stops taking input before the input has ended (the pool stopped, the
    consumer gave up), `on_stopped` may record an error at the next position
    (it gets the function that records it). The input's first chunk is chunk
    `first_chunk` (item `first_item`) of the job: the ones before it were
    sent already.

    Input `in_memory` (a list, a range: reading it cannot block) is handed
    over a window's worth at a time; any other input chunk by chunk, so that
    a slow generator never holds back what it has already given."""
    reader = _Reader(job, items, local_errors, first_chunk, first_item)
    min_room = feeder_min_room(limit)
    try:
        # wait_room is 0 once the job takes no more input (terminate, broken
        # pool, consumer gone): stop reading, even an endless input.
        room = job.wait_room(limit, min_room)
        while room:
            batch: List[Any] = []
            batch_start = reader.index
            while room:
                room -= 1
                payload = reader.next_payload(next(sizes))
                if payload is None:
                    break  # the input ended, or this chunk failed (recorded)
                batch.append(payload)
                if large_limit is not None and len(payload) >= LARGE_PAYLOAD:
                    # Large chunks: fewer in flight (memory, recycled buffers).
                    limit, large_limit = min(limit, large_limit), None
                    min_room = feeder_min_room(limit)
                    room = 0  # ask again, against the smaller window
                    if on_new_limit is not None:
                        on_new_limit(limit)
                if not in_memory:
                    break
            if batch:
                try:
                    engine.add_tasks(job, batch_start, batch, False)
                except ValueError:
                    return  # the pool stopped; the job was failed there
            if reader.exhausted:
                return
            if not room:
                room = job.wait_room(limit, min_room)
        if on_stopped is not None:
            on_stopped(reader.fail)
    finally:
        try:
            engine.add_tasks(job, reader.index, [], True)
        except Exception:
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
                except ValueError:
                    return  # the pool stopped; these tasks were failed there
                batch = []
                batch_bytes = 0
                batch_size = min(batch_size * 2, MAX_BATCH)
    finally:
        try:
            engine.add_tasks(job, batch_start, batch, True)
        except ValueError:
            pass  # the pool stopped: the job was failed there
