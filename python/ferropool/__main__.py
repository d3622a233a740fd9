"""``python -m ferropool demo`` (see ferropool/demo.py),
``python -m ferropool run`` (see ferropool/_patching.py) and
``python -m ferropool bench`` (see ferropool/bench/)."""

import sys

USAGE = """usage: python -m ferropool demo [--processes N] [--start-method METHOD]
       python -m ferropool run script.py [args] | -m module [args]
       python -m ferropool bench [--quick] [--json PATH] [--chart PATH] [...]
                                 (python -m ferropool bench --help for every option)"""


def _main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "run", "bench"):
        print(USAGE)
        return 2
    if sys.argv[1] == "run":
        from ferropool._patching import run_main

        return run_main(sys.argv[2:])
    if sys.argv[1] == "bench":
        from ferropool.bench import main as bench_main

        return bench_main(sys.argv[2:])
    from ferropool.demo import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_main())
