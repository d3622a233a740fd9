"""Fork pools made while other pools are busy: their zygote is forked while
every engine thread of the process is parked (the fork gate), and they work."""

from __future__ import annotations

import threading

import ferropool
from _helpers import square


def test_fork_pools_made_while_another_pool_is_busy():
    busy = ferropool.get_context("fork").Pool(2)
    stop = threading.Event()
    errors = []

    def keep_busy():
        try:
            while not stop.is_set():
                assert busy.map(square, range(100), chunksize=1) == [i * i for i in range(100)]
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        for _ in range(10):
            with ferropool.get_context("fork").Pool(2) as pool:
                assert pool.map(square, range(20)) == [i * i for i in range(20)]
    finally:
        stop.set()
        t.join()
        busy.terminate()
    assert errors == []
