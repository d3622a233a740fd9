"""Adoption without edits: `ferropool.patch()`, `unpatch()`, `patched()` and
`python -m ferropool run`. Whether a task ran on a ferropool worker is asked
of the worker itself: its call stack passes through ferropool's worker loop
(a fork of a process that imported ferropool has the module too, so that
would prove nothing)."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import json
import multiprocessing
import multiprocessing.pool
import textwrap

import _helpers as h
import ferropool
import pytest
from _support import METHODS, run_python, run_script

pytestmark = pytest.mark.timeout(90)

# What each task reports: (run by ferropool's worker loop, the worker's
# multiprocessing.pool.Pool is the patch's stand-in).
PROBE = textwrap.dedent(
    """
    import traceback

    def probe(_=None):
        import multiprocessing.pool
        on_ferropool = any(
            f.filename.endswith("ferropool/_worker.py") for f in traceback.extract_stack()
        )
        return on_ferropool, hasattr(multiprocessing.pool.Pool, "_stdlib_class")
    """
)

# An unchanged program: it knows nothing of ferropool.
PROGRAM = PROBE + textwrap.dedent(
    """
    import concurrent.futures
    import json
    import multiprocessing
    import sys
    from multiprocessing import Pool

    if __name__ == "__main__":
        seen = {"argv": sys.argv[1:]}
        for method in ("fork", "spawn", "forkserver"):
            with multiprocessing.get_context(method).Pool(2) as pool:
                seen[method] = pool.apply(probe)
                assert pool.map(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
        with Pool(2) as pool:
            seen["bound early"] = pool.apply(probe)
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            seen["executor"] = ex.submit(probe).result()
        print(json.dumps(seen))
    """
)


def _run(args, cwd, timeout=80):
    done = run_python("-m", "ferropool", "run", *args, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _all_on_ferropool(seen):
    for key in ("fork", "spawn", "forkserver", "bound early", "executor"):
        assert seen[key] == [True, True], (key, seen)


def test_run_a_script_unchanged_on_ferropool(tmp_path):
    (tmp_path / "program.py").write_text(PROGRAM)
    seen = _run(["program.py", "--flag", "x"], tmp_path)
    assert seen["argv"] == ["--flag", "x"]
    _all_on_ferropool(seen)


def test_run_a_module_unchanged_on_ferropool(tmp_path):
    (tmp_path / "program_module.py").write_text(PROGRAM)
    seen = _run(["-m", "program_module", "a"], tmp_path)
    assert seen["argv"] == ["a"]
    _all_on_ferropool(seen)


def test_run_without_a_program_prints_its_usage():
    done = run_python("-m", "ferropool", "run")
    assert done.returncode == 2
    assert "python -m ferropool run script.py" in done.stdout


LIBRARY = PROBE + textwrap.dedent(
    """
    import multiprocessing

    def run_pool(method):
        # Looks the name up at call time, as most code does.
        with multiprocessing.get_context(method).Pool(2) as pool:
            return pool.apply(probe)
    """
)

PATCH_IN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import library  # imported before the patch
    import ferropool

    if __name__ == "__main__":
        method = sys.argv[1]
        before = library.run_pool(method)
        with ferropool.patched():
            during = library.run_pool(method)
        after = library.run_pool(method)
        print(json.dumps([before, during, after]))
    """
)


@pytest.mark.parametrize("method", METHODS)
def test_code_imported_before_the_patch_runs_on_ferropool(tmp_path, method):
    (tmp_path / "library.py").write_text(LIBRARY)
    done = run_script(tmp_path, PATCH_IN_SCRIPT, method, timeout=80)
    assert done.returncode == 0, done.stderr
    before, during, after = json.loads(done.stdout)
    assert before == [False, False]
    assert during == [True, True]
    assert after == [False, False]


def test_patch_replaces_the_stdlibs_classes_and_unpatch_restores_them():
    stdlib_pool = multiprocessing.pool.Pool
    stdlib_executor = concurrent.futures.process.ProcessPoolExecutor
    thread_pool = multiprocessing.pool.ThreadPool(2)  # made before the patch
    ferropool.patch()
    try:
        assert ferropool._patching.is_patched()
        ferropool.patch()  # twice: no effect
        assert concurrent.futures.ProcessPoolExecutor is ferropool.ProcessPoolExecutor
        assert concurrent.futures.process.ProcessPoolExecutor is ferropool.ProcessPoolExecutor
        stand_in = multiprocessing.pool.Pool
        assert stand_in is not stdlib_pool and issubclass(stand_in, stdlib_pool)
        with multiprocessing.pool.Pool(2) as pool:
            assert type(pool) is ferropool.Pool
            assert isinstance(pool, stand_in) and isinstance(pool, stdlib_pool)
            assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
        # The stdlib's ThreadPool, which calls `Pool.__init__` by its module
        # name, still works, before the patch or during it.
        with multiprocessing.pool.ThreadPool(2) as threads:
            assert type(threads) is multiprocessing.pool.ThreadPool
            assert threads.map(h.square, range(4)) == [0, 1, 4, 9]
            assert isinstance(threads, stand_in)
        assert thread_pool.map(h.square, range(3)) == [0, 1, 4]
        assert isinstance(thread_pool, stand_in)
        assert not issubclass(ferropool.Pool, stdlib_pool)
    finally:
        ferropool.unpatch()
        thread_pool.terminate()
    assert not ferropool._patching.is_patched()
    assert multiprocessing.pool.Pool is stdlib_pool
    assert concurrent.futures.process.ProcessPoolExecutor is stdlib_executor
    assert concurrent.futures.ProcessPoolExecutor is stdlib_executor
    ferropool.unpatch()  # twice: no effect
    with multiprocessing.Pool(1) as pool:
        assert type(pool) is stdlib_pool


def test_patched_leaves_an_earlier_patch_in_place():
    ferropool.patch()
    try:
        with ferropool.patched():
            pass
        assert ferropool._patching.is_patched()
    finally:
        ferropool.unpatch()
    with ferropool.patched():
        assert ferropool._patching.is_patched()
    assert not ferropool._patching.is_patched()


def test_the_stdlibs_other_pool_names_through_ferropool_pool():
    """`import ferropool as multiprocessing` leaves `multiprocessing.pool.ThreadPool`
    (and the module's other names) the stdlib's."""
    import ferropool as mp

    assert mp.pool.Pool is ferropool.Pool
    assert mp.pool.ThreadPool is multiprocessing.pool.ThreadPool
    assert mp.pool.MaybeEncodingError is multiprocessing.pool.MaybeEncodingError
    with mp.pool.ThreadPool(2) as threads:
        assert threads.map(h.square, range(4)) == [0, 1, 4, 9]
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        mp.pool.not_a_name  # noqa: B018
