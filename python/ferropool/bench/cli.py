"""The command line: ``python -m ferropool bench`` (``main``).

    python -m ferropool bench                  # the full comparison (a few minutes)
    python -m ferropool bench --quick          # smaller sizes, one round
    python -m ferropool bench --json out.json --chart out.png
    python -m ferropool bench --from-json out.json --chart out.png   # redraw only
    python -m ferropool bench --load 2         # with 2 CPU-bound processes beside it

Exits with 1 when an implementation returned a wrong result, else 0."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from typing import Iterator, List, Optional

from .adapters import IMPLEMENTATIONS, installed_implementations
from .report import (
    Progress,
    draw_chart,
    from_json,
    metadata,
    report_lines,
    summary_line,
    to_json,
)
from .runner import count_steps, run_all
from .workloads import Config, rows, select_rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ferropool bench",
        description="Time ferropool against multiprocessing / concurrent.futures (and loky, "
        "billiard, pebble, mpire when installed) and print the ratio ferropool / stdlib.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round each")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="draw a PNG chart (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--from-json", metavar="PATH", help="report saved results; run nothing")
    parser.add_argument("--processes", type=int, default=2, help="workers per pool (default 2)")
    parser.add_argument(
        "--start-method",
        default=None,
        help="for every workload but start-up (default: the platform's)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds per case, best kept (default 3, --quick 1)",
    )
    parser.add_argument(
        "--impls", default=None, help="comma-separated subset of " + ",".join(IMPLEMENTATIONS)
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help="comma-separated labels or keys, e.g. 1,2,5a,6 (default: all)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="run N CPU-bound processes beside every row (a busy machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)

    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        results, meta = from_json(data), data["meta"]
    else:
        cfg = Config.make(args.quick, args.processes, args.start_method, args.repeats)
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
        meta = metadata(cfg, impls)
        meta["load"] = args.load
        print(
            f"ferropool bench: {cfg.processes} workers, start method {cfg.start_method!r}, "
            f"Python {meta['python']}, {meta['cpu_count']} CPUs, "
            f"{'quick' if cfg.quick else 'full'} run; comparing {', '.join(impls)}"
            + (f"; {args.load} CPU-bound processes running beside" if args.load else ""),
            flush=True,
        )
        progress = Progress(count_steps(impls, selected, cfg.repeats), enabled=not args.no_progress)
        with cpu_load(args.load):
            results = run_all(cfg, impls, selected, progress)
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
    wrong = any(m.error == "wrong result" for rr in results for m in rr.results.values())
    return 1 if wrong else 0


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """`processes` CPU-bound processes (busy loops) running while the block
    runs: the benchmark then measures a busy machine, where waits that spin
    take CPU from the processes they wait for."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
