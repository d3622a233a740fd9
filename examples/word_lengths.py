"""A typed program on ferropool: checked with `mypy --strict` (make lint)
and run by the test suite (tests/test_examples.py).

    python examples/word_lengths.py
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Dict, List, Tuple

import ferropool

WORDS = ["process", "pool", "engine", "worker", "chunk", "pickle", "future", "signal"]


def length(word: str) -> int:
    return len(word)


def pair(word: str, times: int) -> Tuple[str, int]:
    return word, len(word) * times


def count_letters(words: List[str]) -> Dict[str, int]:
    with ferropool.Pool(2) as pool:
        lengths: List[int] = pool.map(length, words, progress=False)
        pairs: List[Tuple[str, int]] = pool.starmap(pair, [(w, 2) for w in words])
        doubled = {word: n for word, n in pairs}
        assert sum(lengths) * 2 == sum(doubled.values())
        stats = pool.stats()
        assert stats.tasks_done >= 2
    return doubled


def first_future() -> int:
    with ferropool.ProcessPoolExecutor(2) as executor:
        future: Future[int] = executor.submit(length, "executor")
        in_order = list(executor.map(length, WORDS))
        assert in_order == [len(w) for w in WORDS]
        return future.result()


async def awaited() -> List[int]:
    with ferropool.Pool(2) as pool:
        one: int = await pool.apply_async(length, ("asyncio",))
        rest = [n async for n in pool.imap(length, WORDS)]
        return [one, *rest]


def main() -> None:
    print(count_letters(WORDS))
    print(first_future())
    print(asyncio.run(awaited()))


if __name__ == "__main__":
    main()
