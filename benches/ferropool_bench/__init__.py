"""ferropool's benchmark suite: ``python benches/run.py`` (``make bench-chart``)
and the pytest-benchmark harness beside this package (``make bench``). It lives
in the source tree, not in the installed package: the wheel holds ferropool
only.

Every workload runs on ferropool and on the stdlib in the same run, and on the
peers (loky, billiard, pebble, mpire) that are importable. Each row runs at
least 5 rounds (``--quick``: 1), interleaved across the implementations, each
implementation in a fresh interpreter of its own; the report gives the median
(with min and max) and the ratio of ferropool's median to the stdlib's (lower
is better) against the target of the project's performance issue. The pool is
created and warmed up outside the timed region, except in the start-up and
whole-script rows, which time exactly that. A run can be quiet, loaded (N
CPU-bound processes beside every row: ``--load N``) or both (``--also-load
N``); the payload rows also give the first call in a fresh interpreter (cold).
Rows 11 compare ferropool.dask on a LocalCluster (the opt-in implementation
"ferropool-dask") with ferropool's local engine instead: the cost of going
remote, reported in a table of their own, with no target.

The data flow, one module a step:

* ``tasks``: the task functions the workers import by name (``inc``,
  ``identity``, ``burn``), in a module that imports nothing;
* ``adapters``: the implementations (``installed_implementations``,
  ``versions``) behind one Pool-like API (``open_pool``, ``open_executor``),
  and the start-up probe run in a fresh interpreter;
* ``workloads``: ``Config``; ``Row``, a row's data (saved with the results)
  and its behaviour (not saved): the round case that times it
  (``measure``), what a pool runs for it (``work``, a ``Workload``) or how
  it is derived from others (``derive``);
* ``cases``: a ``Case`` per row and implementation, run in one process: it
  opens the pool and runs the row's ``Workload`` (``make_case``);
* ``server``: the case server, a fresh interpreter that opens one ``Case``
  and times a round per command (``serve``; ``CaseServer`` is its other end);
* ``rounds``: what the bench process times a round of (``RoundCase``,
  which a row names): a case server's round, a payload round in a fresh
  server, a start-up probe, the whole script;
* ``results``: every round's time (``Measurement``), a row's ratios and
  targets (``RowResult``), a run's quiet and loaded phases
  (``BenchResults``), JSON out and back in;
* ``suite``: the rows of the report (``rows``, ``select_rows``), each with
  its sizes, targets and behaviour: adding a row is one entry there;
* ``runner``: the rounds of a row interleaved (``RowRounds``,
  ``measure_row``), every row quiet and/or loaded (``run_all``);
* ``report``: the ratio table, its notes and summary, the metadata, the
  progress bar; ``chart``: the PNG chart;
* ``cli``: ``main``, the command line tying them together. The
  pytest-benchmark harness beside this package measures each row and
  implementation through ``runner.RowRounds`` too, and reports through
  ``report``.

Nothing heavy is imported at import time: ferropool's pools, the peers, numpy
and matplotlib only when a workload or the chart needs them. This package
itself imports nothing: a worker imports it on its way to ``tasks``. The
interpreters the bench starts find it on PYTHONPATH (``adapters.child_env``).
"""
