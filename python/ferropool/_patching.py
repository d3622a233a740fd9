"""``ferropool.patch()``: the stdlib's pool classes build ferropool's, so that
an unchanged program, and the libraries it uses, run on ferropool.

What is replaced, and why each is safe:

* ``multiprocessing.pool.Pool`` becomes a stand-in subclass of the stdlib's
  class. Calling the stand-in itself builds a ``ferropool.Pool``; this is
  where ``multiprocessing.Pool(...)`` and ``get_context(m).Pool(...)`` end up,
  since the contexts' ``Pool`` method looks the class up at each call (code
  that bound ``from multiprocessing import Pool`` before the patch included).
  The stdlib's own code that reads the module's ``Pool`` (``ThreadPool``'s
  constructor calls ``Pool.__init__``; the pool's helpers call
  ``Pool._maintain_pool`` and the like) finds the stdlib's methods through
  the subclass, and a subclass made after the patch is a stdlib pool: it may
  rely on the stdlib's internals. ``isinstance`` with the stand-in is true for
  the stdlib's pools and ferropool's alike.
* ``concurrent.futures.ProcessPoolExecutor`` (the package's attribute and
  ``concurrent.futures.process.ProcessPoolExecutor``) becomes
  ``ferropool.ProcessPoolExecutor``; the stdlib's module does not read the
  name itself.

A name bound before the patch to the class itself (``from
concurrent.futures import ProcessPoolExecutor`` at import time) keeps the
stdlib's class: it is looked up before the patch exists. Workers of a pool
made while patched are patched too (see WorkerSetup.patched).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, Optional, Tuple

# (module, attribute) -> what patch() replaced there; None when unpatched.
_replaced: Optional[Dict[Tuple[Any, str], Any]] = None


def is_patched() -> bool:
    """Whether ``patch()`` is in effect."""
    return _replaced is not None


def patch() -> None:
    """Makes ``multiprocessing.Pool`` (of every context),
    ``multiprocessing.pool.Pool`` and ``concurrent.futures.ProcessPoolExecutor``
    build ferropool's for the rest of the process (until ``unpatch()``).
    Calling it again does nothing."""
    global _replaced
    if _replaced is not None:
        return
    import concurrent.futures
    import concurrent.futures.process
    import multiprocessing.pool

    from .executor import ProcessPoolExecutor

    stdlib_pool = multiprocessing.pool.Pool
    stdlib_executor = concurrent.futures.process.ProcessPoolExecutor
    replaced: Dict[Tuple[Any, str], Any] = {}
    for module, name, new in (
        (multiprocessing.pool, "Pool", _stand_in_for(stdlib_pool)),
        (concurrent.futures.process, "ProcessPoolExecutor", ProcessPoolExecutor),
        (concurrent.futures, "ProcessPoolExecutor", ProcessPoolExecutor),
    ):
        # The package's attribute may not exist yet (its module __getattr__
        # makes it on first access): unpatch() then sets what that gives.
        replaced[(module, name)] = module.__dict__.get(name, stdlib_executor)
        setattr(module, name, new)
    _replaced = replaced


def unpatch() -> None:
    """Undoes ``patch()``; pools and executors made meanwhile stay
    ferropool's. Calling it when not patched does nothing."""
    global _replaced
    if _replaced is None:
        return
    for (module, name), old in _replaced.items():
        setattr(module, name, old)
    _replaced = None


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``patch()`` for the ``with`` block, then ``unpatch()`` (unless it
    was patched already when the block began)."""
    was_patched = is_patched()
    patch()
    try:
        yield
    finally:
        if not was_patched:
            unpatch()


class _StandInType(type):
    """The stand-in's metaclass: `isinstance(x, multiprocessing.pool.Pool)`
    stays true for the stdlib's pools (made before or after the patch, and
    its ThreadPool) as well as ferropool's."""

    _stdlib_class: type

    def __instancecheck__(cls, obj: Any) -> bool:
        from .pool import Pool

        return isinstance(obj, (cls._stdlib_class, Pool))

    def __subclasscheck__(cls, sub: type) -> bool:
        return type.__subclasscheck__(cls, sub) or issubclass(sub, cls._stdlib_class)


def _stand_in_for(stdlib_pool: type) -> type:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls is stand_in:
            from .pool import Pool

            return Pool(*args, **kwargs)
        return object.__new__(cls)  # the stdlib's Pool has no __new__ of its own

    namespace = {
        "__new__": __new__,
        "__module__": stdlib_pool.__module__,
        "__qualname__": stdlib_pool.__qualname__,
        "__doc__": stdlib_pool.__doc__,
        "_stdlib_class": stdlib_pool,
    }
    stand_in = _StandInType(stdlib_pool.__name__, (stdlib_pool,), namespace)
    return stand_in


RUN_USAGE = """usage: python -m ferropool run script.py [args ...]
       python -m ferropool run -m module [args ...]

Runs an unchanged program with ferropool.patch() applied: its
multiprocessing pools and ProcessPoolExecutors, and those of the libraries
it uses, are ferropool's."""


def run_main(argv: list[Any]) -> int:
    """``python -m ferropool run``: as ``python script.py`` or ``python -m
    module`` would run it, patched first."""
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(RUN_USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    patch()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in argv[0]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        path = argv[0]
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        runpy.run_path(path, run_name="__main__")
    return 0
