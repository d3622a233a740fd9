"""The command line: ``python benches/run.py`` (``main``).

    python benches/run.py                     # the full comparison (quiet)
    python benches/run.py --quick             # smaller sizes, one round
    python benches/run.py --also-load 2 --json out.json --chart out.png
                                              # quiet, then loaded, both reported
    python benches/run.py --load 2            # loaded only: 2 CPU-bound processes beside
    python benches/run.py --from-json out.json --chart out.png   # redraw only

Exits with 1 when an implementation returned a wrong result, else 0."""

from __future__ import annotations

import argparse
import json
import os
from typing import List, Optional

from .adapters import IMPLEMENTATIONS, installed_implementations
from .chart import draw_chart
from .report import Progress, busy, metadata, report_lines, summary_line
from .results import from_json, to_json
from .runner import count_steps, cpu_load, run_all
from .suite import rows, select_rows
from .workloads import MIN_ROUNDS, SCRIPT_ROUNDS, Config

__all__ = ["cpu_load", "main"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benches/run.py",
        description="Time ferropool against multiprocessing / concurrent.futures (and loky, "
        "billiard, pebble, mpire when installed) and print the ratio ferropool / stdlib "
        "of their medians, each implementation in a fresh interpreter, rounds interleaved.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round each")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="draw a PNG chart (needs matplotlib)")
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (with min–max)"
    )
    parser.add_argument("--from-json", metavar="PATH", help="report saved results; run nothing")
    parser.add_argument("--processes", type=int, default=2, help="workers per pool (default 2)")
    parser.add_argument(
        "--start-method",
        default=None,
        help="for every workload but start-up and whole-script (default: the platform's)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help=f"interleaved rounds per row, the median reported (default {MIN_ROUNDS}, at least "
        f"{MIN_ROUNDS} but with --quick, which defaults to 1; whole-script rows: at least "
        f"{SCRIPT_ROUNDS})",
    )
    parser.add_argument(
        "--impls", default=None, help="comma-separated subset of " + ",".join(IMPLEMENTATIONS)
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help="comma-separated labels or keys, e.g. 1,2,5a,6,10 (default: all)",
    )
    load_group = parser.add_mutually_exclusive_group()
    load_group.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="loaded only: run N CPU-bound processes beside every row (a busy machine)",
    )
    load_group.add_argument(
        "--also-load",
        type=int,
        default=0,
        metavar="N",
        help="run every row quiet, then again with N CPU-bound processes beside it; "
        "report both (and the cold figures) in one table, JSON and chart",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        try:
            results = from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            parser.error(f"{args.from_json}: {e}")
        meta = data["meta"]
    else:
        if args.load < 0 or args.also_load < 0:
            parser.error("--load and --also-load take a count of processes, 0 or more")
        try:
            cfg = Config.make(args.quick, args.processes, args.start_method, args.repeats)
        except ValueError as e:
            parser.error(f"--repeats: {e}")
        impls = installed_implementations()
        if args.impls:
            wanted = [s.strip() for s in args.impls.split(",")]
            unknown = [w for w in wanted if w not in IMPLEMENTATIONS]
            if unknown:
                parser.error(f"unknown implementations: {', '.join(unknown)}")
            impls = [i for i in impls if i in wanted]
        selected = select_rows(rows(cfg), args.workloads)
        if not selected:
            parser.error("no workload matches --workloads")
        meta = metadata(cfg, impls, args.load, args.also_load)
        if args.also_load:
            phases = f"; every row quiet, then with {busy(args.also_load)} beside"
        elif args.load:
            phases = f"; {busy(args.load)} running beside"
        else:
            phases = ""
        print(
            f"ferropool bench: {cfg.processes} workers, start method {cfg.start_method!r}, "
            f"Python {meta['python']}, {meta['cpu_count']} CPUs, "
            f"{'quick' if cfg.quick else 'full'} run; comparing {', '.join(impls)}{phases}",
            flush=True,
        )
        steps = count_steps(impls, selected, cfg, 2 if args.also_load else 1)
        progress = Progress(steps, enabled=not args.no_progress)
        results = run_all(cfg, impls, selected, progress, args.load, args.also_load)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(to_json(results, meta), f, indent=1)
                f.write("\n")
    for line in report_lines(results, meta, args.markdown):
        print(line)
    print(summary_line(results))
    if args.chart:
        draw_chart(results, meta, args.chart)
        print(f"chart written to {args.chart}")
    wrong = any(
        m.error is not None and m.error.startswith("wrong result")
        for rr in results.all()
        for m in rr.results.values()
    )
    return 1 if wrong else 0
