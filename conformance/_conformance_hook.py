"""Imported at start-up by every Python process of a conformance run (through
a .pth file that `run.py` installs, active only while FERROPOOL_CONFORMANCE_HOOK
names this folder): makes the stdlib's pool and executor names build
ferropool's, so CPython's own tests exercise ferropool, in the test process
and in every process it starts (workers, `multiprocessing.Process` children,
scripts run with `python -I`).

Only the names are replaced: `multiprocessing.pool.Pool` stays the stdlib's
class (its `ThreadPool` subclass and the manager's pool use it)."""

import concurrent.futures as _futures
import concurrent.futures.process as _futures_process
import multiprocessing
import os
import sys
from multiprocessing import context as _context

import ferropool.executor
import ferropool.pool

_extra_tests = os.environ.get("FERROPOOL_CONFORMANCE_TESTPATH")
if _extra_tests:
    # Test modules this interpreter lacks, taken from its distribution's
    # test-suite package: they join the `test` package.
    import test

    if _extra_tests not in test.__path__:
        test.__path__.append(_extra_tests)

_suites = os.path.join(os.path.dirname(os.path.abspath(__file__)), "suites")
if _suites not in sys.path:
    sys.path.append(_suites)


def _ferropool_pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
    return ferropool.pool.Pool(
        processes, initializer, initargs, maxtasksperchild, context=self.get_context()
    )


_context.BaseContext.Pool = _ferropool_pool
# `multiprocessing.Pool` is the default context's method, bound at import.
multiprocessing.Pool = _context._default_context.Pool
_futures.ProcessPoolExecutor = ferropool.executor.ProcessPoolExecutor
_futures_process.ProcessPoolExecutor = ferropool.executor.ProcessPoolExecutor
