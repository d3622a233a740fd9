"""Reading a map's input and handing it to the engine chunk by chunk.

    input ── islice(chunk) ── pickle ──▶ Engine.add_tasks(job, index, [payload])
                 │ input raised / chunk unpicklable
                 └──▶ local_errors[index] + Job.add_local_error(index)

A `Reader` reads and pickles the chunks. `feed` is lazy: it keeps at most
`Window.limit` chunks in the job's read-ahead window (a chunk's place is
freed when its consumer takes it, see `Job.release`). `feed_all` reads
everything at once, as the stdlib does, and may hand the rest of a large
input over to a `feed`.

As in the stdlib, a chunk that cannot be pickled fails at its own position
and the rest go on; an exception from the input fails the next position and
ends the input. Such failures never reach a worker: the exception stays in
`local_errors` and the job gets a placeholder outcome in its place.
"""

from __future__ import annotations

import itertools
import threading

from ._native import EngineStopped
from ._pickling import dumps_chunk

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

    # What a lazy map's feeder calls when the input was cut short (see feed).
    OnStopped = Optional[Callable[[Callable[[BaseException], None]], None]]

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


class Reader:
    """Reads a map's input chunk by chunk and pickles each chunk. A failure
    (the input raised, a chunk cannot be pickled) is recorded at its
    position (see the module's docstring), or, `strict`, raised: a sized
    ``Pool.map`` fails at the call, as its caller reads the whole input.

    A sized input's `length` ends the reading there; `as_range` (a range
    being mapped) is cut into ranges instead of lists (a few bytes each, and
    the function gets the same ints). The reader is handed on from one way
    of feeding to the other: `index` and `first_item` say where it is."""

    def __init__(
        self,
        job: Any,
        iterable: Iterable[Any],
        local_errors: Dict[int, BaseException],
        *,
        length: Optional[int] = None,
        as_range: Optional[range] = None,
        strict: bool = False,
        pickle_chunk: Callable[[Any, int], Any] = dumps_chunk,
    ) -> None:
        self.job = job
        self.items = iter(iterable)
        self.local_errors = local_errors
        self.length = length
        self.as_range = as_range
        self.strict = strict
        self.pickle_chunk = pickle_chunk  # the pool's serializer's
        # Reading it cannot block: handed over a window's worth at a time.
        self.in_memory = type(iterable) in (list, tuple, range)
        self.index = 0  # the next chunk's
        self.first_item = 0  # the next chunk's first item's
        self.exhausted = False

    def next_payload(self, size: int) -> Any:
        """The next chunk, pickled; None when it failed (recorded) or the
        input has ended (`exhausted`)."""
        try:
            if self.as_range is not None:
                chunk: Any = self.as_range[self.first_item : self.first_item + size]
            else:
                chunk = list(itertools.islice(self.items, size))
        except Exception as e:
            if self.strict:
                raise
            self.fail(e)
            self.exhausted = True
            return None
        if not chunk:
            self.exhausted = True
            return None
        try:
            payload = self.pickle_chunk(chunk, self.first_item)
        except Exception as e:
            if self.strict:
                raise
            self.fail(e)
            payload = None
        else:
            self.index += 1
        self.first_item += len(chunk)
        if self.length is not None and self.first_item >= self.length:
            self.exhausted = True
        return payload

    def fail(self, error: BaseException) -> None:
        self.local_errors[self.index] = error
        self.job.add_local_error(self.index)
        self.index += 1


def feed(
    engine: Any,
    job: Any,
    reader: Reader,
    sizes: Iterator[int],
    window: Window,
    on_stopped: OnStopped = None,
) -> None:
    """Reads a lazy map's input (chunk sizes from `sizes`): at most
    `window.limit` chunks in flight (read before each wait, shrunk here once
    a chunk pickles to a megabyte or more). When the job stops taking input
    before the input has ended (the pool stopped, the consumer gave up),
    `on_stopped` may record an error at the next position (it gets the
    function that records it).

    Input in memory (a list, a range: see `Reader.in_memory`) is handed
    over a window's worth at a time; any other input chunk by chunk, so that
    a slow generator never holds back what it has already given."""

    def wait_room() -> int:
        # 0 once the job takes no more input (terminate, broken pool,
        # consumer gone): stop reading, even an endless input.
        room: int = job.wait_room(window.limit, feeder_min_room(window.limit))
        return room

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
                if not reader.in_memory:
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


def start_feeder(
    engine: Any,
    job: Any,
    reader: Reader,
    sizes: Iterator[int],
    window: Window,
    on_stopped: OnStopped = None,
) -> threading.Thread:
    """`feed` in a thread of its own (the caller goes on)."""
    feeder = threading.Thread(
        target=feed,
        args=(engine, job, reader, sizes, window, on_stopped),
        name="ferropool-feeder",
        daemon=True,
    )
    feeder.start()
    return feeder


def feed_all(
    engine: Any,
    job: Any,
    reader: Reader,
    chunksize: int,
    first_batch: int = FIRST_BATCH,
    hand_over: Optional[Callable[[int, int], bool]] = None,
) -> bool:
    """Reads the input now, handing chunks to the engine in growing batches
    (the workers start on the first ones while the rest is read), and closes
    the job. After each batch, `hand_over(chunks sent, bytes sent)` may say
    to stop here: then the job is left open and False returned, for a
    `feed` to go on from where `reader` is."""
    batch: List[bytes] = []
    batch_start = reader.index
    batch_bytes = 0
    batch_size = first_batch
    sent = sent_bytes = 0
    handed_over = False
    try:
        while not reader.exhausted:
            start = reader.index
            payload = reader.next_payload(chunksize)
            if payload is not None:
                if not batch:
                    batch_start = start
                batch.append(payload)
                batch_bytes += len(payload)
            # A failure in between breaks the run of indices: send what came
            # before. The last batch goes with the close, below.
            full = len(batch) >= batch_size or batch_bytes >= BATCH_BYTES
            if batch and (payload is None or full) and not reader.exhausted:
                try:
                    engine.add_tasks(job, batch_start, batch, False)
                except EngineStopped:
                    return True  # the pool stopped; these tasks were failed there
                sent += len(batch)
                sent_bytes += batch_bytes
                batch = []
                batch_bytes = 0
                batch_size = min(batch_size * 2, MAX_BATCH)
                if hand_over is not None and hand_over(sent, sent_bytes):
                    handed_over = True
                    return False
        return True
    except BaseException:
        batch = []  # a call that failed (strict reader) sends nothing more
        raise
    finally:
        if not handed_over:
            try:
                engine.add_tasks(job, batch_start, batch, True)
            except EngineStopped:
                pass  # the pool stopped: the job was failed there
