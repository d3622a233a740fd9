"""``python -m ferropool demo`` (see ferropool/demo.py) and
``python -m ferropool bench`` (see ferropool/bench/)."""

import sys

USAGE = """usage: python -m ferropool demo [--processes N] [--start-method METHOD]
       python -m ferropool bench [--quick] [--json PATH] [--chart PATH] [...]
                                 (python -m ferropool bench --help for every option)"""


def _main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "bench"):
        print(USAGE)
        return 2
    if sys.argv[1] == "bench":
        from ferropool.bench import main as bench_main

        return bench_main(sys.argv[2:])
    from ferropool.demo import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_main())
