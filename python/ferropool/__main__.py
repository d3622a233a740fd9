"""``python -m ferropool demo``: see ferropool/demo.py."""

import sys


def _main() -> int:
    commands = {"demo"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print("usage: python -m ferropool demo [--processes N] [--start-method METHOD]")
        return 2
    from ferropool.demo import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_main())
