"""The programs in examples/ run (make lint checks them with mypy --strict)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import run_python

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    done = run_python(str(script), cwd=tmp_path, timeout=80)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip()


def test_there_are_examples():
    assert EXAMPLES
