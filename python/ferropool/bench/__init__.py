"""The benchmark suite: ``python -m ferropool bench`` and ``make bench``.

Every workload runs on ferropool and on the stdlib in the same run, and on the
peers (loky, billiard, pebble, mpire) that are importable. Each is timed
``repeats`` times (best of), with the pool created and warmed up outside the
timed region, except for the start-up workloads, which time exactly that. The
report gives each implementation's time and the ratio ferropool / stdlib
(lower is better) against the target of the project's performance issue.

The data flow, one module a step:

* ``tasks``: the task functions the workers import by name (``inc``,
  ``identity``, ``burn``), in a module that imports nothing;
* ``workloads``: ``Config`` and the rows of the report (``rows``,
  ``select_rows``);
* ``adapters``: the implementations (``installed_implementations``,
  ``versions``) behind one Pool-like API (``open_pool``, ``open_executor``),
  and the start-up probe run in a fresh interpreter;
* ``runner``: a ``Case`` per row and implementation, timed in rounds into
  ``Measurement``s (``measure_row``), and ``run_all`` giving a ``RowResult``
  per row;
* ``report``: the ratio table and notes, the metadata, JSON out and back in,
  the chart, the progress bar;
* ``cli``: ``main``, the command line tying them together (also driven, row by
  row, by the pytest-benchmark harness in ``benches/``).

Nothing heavy is imported at import time: ferropool's pools, the peers, numpy
and matplotlib only when a workload or the chart needs them. This package
itself imports nothing until ``main`` is asked for: a worker imports it on
its way to ``tasks``.
"""

TYPE_CHECKING = False  # no `typing` import: workers import this package
if TYPE_CHECKING:
    from .cli import main as main

__all__ = ["main"]


def __getattr__(name: str) -> object:
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
