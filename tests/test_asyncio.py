"""`await` on a Pool's results and `async for` over its imap iterators: the
event loop stays responsive (a ticker keeps ticking) while results are
awaited, and no thread is started per waiter."""

from __future__ import annotations

import asyncio
import threading
import time

import _helpers as h
import ferropool
import pytest

pytestmark = pytest.mark.timeout(60)


async def _ticking(work, interval=0.01):
    """Runs `work` beside a ticker; returns (work's result, ticks, threads
    seen while it ran beyond those at the start)."""
    ticks = 0
    stop = asyncio.Event()
    before = set(threading.enumerate())
    extra = set()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            extra.update(set(threading.enumerate()) - before)
            await asyncio.sleep(interval)

    tick_task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        stop.set()
        await tick_task
    return result, ticks, extra


def test_await_apply_async_keeps_the_loop_responsive(make_pool):
    pool = make_pool(2)

    async def main():
        return await _ticking(pool.apply_async(h.sleep_then, (0.5, "slept")))

    result, ticks, extra = asyncio.run(main())
    assert result == "slept"
    assert ticks >= 10, ticks  # 0.5 s of 10 ms ticks, with room for a busy machine
    assert not extra, extra


def test_await_map_async_and_its_errors(fpool):
    async def main():
        values = await fpool.map_async(h.square, range(10), 2)
        with pytest.raises(ValueError):
            await fpool.map_async(h.fail_on, range(5), 1)
        # Many awaits at once on one loop, each with its own job.
        many = await asyncio.gather(*(fpool.apply_async(h.square, (i,)) for i in range(50)))
        return values, many

    values, many = asyncio.run(main())
    assert values == [x * x for x in range(10)]
    assert many == [i * i for i in range(50)]


def test_await_a_result_with_a_callback_sees_the_callback_done(fpool):
    called = []

    async def main():
        result = fpool.apply_async(h.sleep_then, (0.2, 7), callback=called.append)
        value = await result
        return value, list(called)

    value, seen = asyncio.run(main())
    assert value == 7 and seen == [7]


def test_await_a_ready_result_returns_at_once(fpool):
    result = fpool.apply_async(h.square, (4,))
    result.wait(30)

    async def main():
        return await result

    assert asyncio.run(main()) == 16


@pytest.mark.parametrize("ordered", [True, False])
def test_async_for_over_imap(make_pool, ordered):
    pool = make_pool(2)
    pairs = [(0.05 * (i % 3), i) for i in range(12)]

    async def collect():
        imap = pool.imap if ordered else pool.imap_unordered
        return [value async for value in imap(h.delayed, pairs)]

    async def main():
        return await _ticking(collect())

    got, ticks, extra = asyncio.run(main())
    assert (got if ordered else sorted(got)) == list(range(12))
    assert ticks >= 5, ticks
    assert not extra, extra


def test_async_for_over_a_generator_with_chunks_and_errors(fpool):
    def numbers():
        yield from range(20)

    async def main():
        out = [v async for v in fpool.imap(h.square, numbers(), chunksize=3)]
        failures = []
        async for value in fpool.imap(h.fail_on, range(5)):
            failures.append(value)
            if value == 1:
                break
        return out, failures

    out, failures = asyncio.run(main())
    assert out == [x * x for x in range(20)]
    assert failures == [0, 1]


def test_an_imap_error_is_raised_in_async_for(fpool):
    async def main():
        seen = []
        with pytest.raises(ValueError):
            async for value in fpool.imap(h.fail_on, range(5)):
                seen.append(value)
        return seen

    assert asyncio.run(main()) == [0, 1]


def test_two_event_loops_in_two_threads_await_one_pool():
    with ferropool.Pool(2) as pool:
        results = {}

        def run(name):
            async def main():
                return await asyncio.gather(*(pool.apply_async(h.add, (i, 1)) for i in range(20)))

            results[name] = asyncio.run(main())

        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == {"a": list(range(1, 21)), "b": list(range(1, 21))}


def test_executor_futures_in_an_event_loop():
    async def main():
        with ferropool.ProcessPoolExecutor(2) as ex:
            loop = asyncio.get_running_loop()
            direct = await loop.run_in_executor(ex, h.add, 2, 3)
            wrapped = await asyncio.wrap_future(ex.submit(h.square, 6))
            return direct, wrapped

    assert asyncio.run(main()) == (5, 36)


def test_async_for_ends_when_the_input_ends_after_the_last_result(fpool):
    """The last result arrives while the input is still open; the job
    completes only when the input ends, and that too must wake the loop."""

    def slow_end():
        yield from range(3)
        time.sleep(0.5)  # every result is in before the input ends

    async def main():
        return [v async for v in fpool.imap(h.square, slow_end())]

    assert asyncio.run(main()) == [0, 1, 4]


def test_progress_of_an_unread_map_async_ends_when_the_input_ends(fpool):
    seen = []

    def slow_end():
        yield from range(4)
        time.sleep(0.5)

    result = fpool.map_async(h.square, slow_end(), 1, progress=lambda d, t: seen.append((d, t)))
    result.wait(30)
    deadline = time.monotonic() + 10
    while (not seen or seen[-1] != (4, None)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[-1] == (4, None)
