"""Lambdas, closures and interactively defined functions (cloudpickle when
the standard pickler cannot send them), and `serializer=`."""

from __future__ import annotations

import pickle
import sys
import textwrap

import _helpers as h
import ferropool
import pytest
from _support import METHODS, run_python, run_script

pytestmark = pytest.mark.timeout(60)


def _closure(offset):
    def add(x):
        return x + offset

    return add


def test_lambdas_and_closures_run_with_cloudpickle(make_pool):
    pool = make_pool(2)
    offset = 10
    assert pool.map(lambda x: x + offset, range(5)) == [10, 11, 12, 13, 14]
    assert pool.apply(_closure(3), (4,)) == 7
    assert list(pool.imap_unordered(lambda x: -x, [1, 2])) in ([-1, -2], [-2, -1])
    # Arguments and input too: a lambda as an argument, as an item.
    assert pool.apply(_call_it, (lambda: 5,)) == 5
    assert pool.map(_call_it, [lambda: 1, lambda: 2]) == [1, 2]
    assert pool.starmap(lambda a, b: a * b, [(2, 3), (4, 5)]) == [6, 20]


def _call_it(f):
    return f()


def test_executor_takes_lambdas_with_cloudpickle(method):
    ctx = ferropool.get_context(method)
    factor = 3
    with ferropool.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert ex.submit(lambda: factor).result() == 3
        assert list(ex.map(lambda x: x * factor, range(4))) == [0, 3, 6, 9]
        assert ex.submit(_call_it, lambda: 4).result() == 4


NO_CLOUDPICKLE = textwrap.dedent(
    """
    import sys
    sys.modules["cloudpickle"] = None  # as if it were not installed
    import ferropool

    if __name__ == "__main__":
        k = 2
        with ferropool.get_context(sys.argv[1]).Pool(1) as pool:
            for call in (
                lambda: pool.map(lambda x: x * k, range(3)),
                lambda: pool.apply(len, (lambda: 1,)),
            ):
                try:
                    call()
                except Exception as e:
                    print(type(e).__name__, "|", e)
            print(pool.apply(abs, (-3,)))
    """
)


@pytest.mark.parametrize("method", METHODS)
def test_without_cloudpickle_the_error_names_the_fix(tmp_path, method):
    done = run_script(tmp_path, NO_CLOUDPICKLE, method)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    for line, culprit in zip(lines, ["the function <function <lambda>", "argument 0"]):
        assert culprit in line, line
        assert "pip install 'ferropool[cloudpickle]'" in line, line
    assert lines[2] == "3"


def test_the_hint_is_only_for_what_cloudpickle_would_send(fpool, monkeypatch):
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    import threading

    with pytest.raises(TypeError) as info:
        fpool.apply(h.identity, (threading.Lock(),))
    assert "argument 0" in str(info.value)
    assert "cloudpickle" not in str(info.value)


def test_a_function_defined_in_an_interactive_session(tmp_path):
    """`python -c` (as a REPL or a notebook): spawn workers cannot import
    `__main__`'s functions by name; they travel by value."""
    code = textwrap.dedent(
        """
        import ferropool
        def double(x):
            return 2 * x
        for method in ("fork", "spawn", "forkserver"):
            with ferropool.get_context(method).Pool(2) as pool:
                print(method, pool.map(double, range(3)))
        """
    )
    done = run_python("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "fork [0, 2, 4]",
        "spawn [0, 2, 4]",
        "forkserver [0, 2, 4]",
    ]


@pytest.mark.parametrize("kind", ["Pool", "ProcessPoolExecutor"])
def test_serializer_pickle_refuses_lambdas(kind):
    if kind == "Pool":
        with ferropool.Pool(1, serializer="pickle") as pool:
            with pytest.raises(Exception, match="lambda"):
                pool.apply(lambda: 1)
            assert pool.apply(h.square, (3,)) == 9
    else:
        with ferropool.ProcessPoolExecutor(1, serializer="pickle") as ex:
            with pytest.raises(Exception, match="lambda"):
                ex.submit(lambda: 1).result()
            assert ex.submit(h.square, 3).result() == 9


def test_serializer_cloudpickle_sends_everything_by_value(make_pool):
    pool = make_pool(2, serializer="cloudpickle")
    assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
    assert pool.apply(lambda a, b: a - b, (5,), {"b": 2}) == 3
    assert list(pool.imap(lambda x: x + 1, range(3))) == [1, 2, 3]


def test_a_custom_serializer_is_used_on_both_sides(make_pool):
    pool = make_pool(2, serializer=h.MarkedPickle())
    assert pool.map(h.square, range(6), chunksize=2) == [0, 1, 4, 9, 16, 25]
    assert pool.apply(h.add, (2, 3)) == 5
    assert list(pool.imap(h.square, iter(range(3)))) == [0, 1, 4]
    with ferropool.ProcessPoolExecutor(2, serializer=h.MarkedPickle()) as ex:
        assert ex.submit(h.add, 1, 2).result() == 3
        assert list(ex.map(h.square, range(3))) == [0, 1, 4]


def test_a_module_as_serializer(make_pool):
    pool = make_pool(1, serializer=pickle)
    assert pool.apply(h.add, (2, 2)) == 4


@pytest.mark.parametrize(
    "bad, error, words",
    [
        ("yaml", ValueError, "'pickle', 'cloudpickle' or an object with dumps and loads"),
        (object(), TypeError, "an object with dumps and loads"),
    ],
)
def test_a_bad_serializer_is_refused_by_name(bad, error, words):
    with pytest.raises(error, match=words):
        ferropool.Pool(1, serializer=bad)
    with pytest.raises(error, match=words):
        ferropool.ProcessPoolExecutor(1, serializer=bad)
