"""``python -m ferropool demo`` (see ferropool/demo.py) and
``python -m ferropool run`` (see ferropool/_patching.py). The benchmark suite
is not installed: it lives in the source tree's benches/."""

import sys

USAGE = """usage: python -m ferropool demo [--processes N] [--start-method METHOD]
       python -m ferropool run script.py [args] | -m module [args]"""

BENCH_MOVED = (
    "python -m ferropool bench: the benchmark suite is not installed; it lives in the "
    "source tree's benches/: from a checkout, run `make bench` (pytest-benchmark) or "
    "`make bench-chart` (python benches/run.py)"
)


def _main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        print(BENCH_MOVED, file=sys.stderr)
        return 2
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "run"):
        print(USAGE)
        return 2
    if sys.argv[1] == "run":
        from ferropool._patching import run_main

        return run_main(sys.argv[2:])
    from ferropool.demo import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_main())
