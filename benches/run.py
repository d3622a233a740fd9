"""The benchmark's command line, from a checkout: ``python benches/run.py``.

    python benches/run.py --quick --workloads 1,5a      # a smoke run
    python benches/run.py --also-load 2 --json docs/bench-results.json --chart docs/bench.png
    python benches/run.py --from-json docs/bench-results.json --chart out.png   # redraw
    python benches/run.py --help                        # every option

Run as a script, this directory is first on sys.path, so ``ferropool_bench``
imports from here; the interpreters the bench starts get it on PYTHONPATH.
ferropool itself is the installed one (``make install``: the checkout's).
"""

import sys

from ferropool_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
