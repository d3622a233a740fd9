"""Every Pool and executor example of the tutorials in ../shared/seeds runs
unchanged under ferropool, under each start method, with the output the
stdlib gives (see tests/seeds/README.md for where each script comes from).

Each script's imports are pointed at ferropool (and nothing else is touched),
the script is written to a temporary file and run in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = Path(__file__).parent / "seeds"
sys.path.insert(0, str(SEEDS))
from run_seed import check_output, directives, swap_imports  # noqa: E402

SCRIPTS = sorted(p for p in SEEDS.glob("[0-9][0-9][0-9]_*.py"))
METHODS = ["fork", "spawn", "forkserver"]


def _uses_executor(script: Path) -> bool:
    return "ProcessPoolExecutor" in script.read_text(encoding="utf-8")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_seed_runs_unchanged(script: Path, method: str, tmp_path: Path) -> None:
    expected = script.with_suffix(".expected")
    want = directives(expected)
    if sys.version_info < want["min_python"] and not _uses_executor(script):
        pytest.skip(f"the example needs Python {want['min_python']}")
    if _uses_executor(script):
        import ferropool

        if not hasattr(ferropool, "ProcessPoolExecutor"):
            pytest.skip("ferropool.ProcessPoolExecutor is the subject of issue 3")
    swapped = tmp_path / script.name
    swapped.write_text(swap_imports(script.read_text(encoding="utf-8")), encoding="utf-8")
    assert "ferropool" in swapped.read_text(encoding="utf-8"), "the import swap changed nothing"
    env = dict(os.environ, PYTHONIOENCODING="utf-8")

    def run(**extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SEEDS / "with_start_method.py"), method, str(swapped)],
            cwd=tmp_path,
            env=dict(env, **extra_env),
            capture_output=True,
            text=True,
            timeout=100,
        )

    # A script that fails because the stdlib cannot pickle a lambda or a
    # local function fails the same way without cloudpickle (the error then
    # names the fix); with it, ferropool sends them by value and it runs.
    proc = run(HIDE_MODULES="cloudpickle") if want["by_value"] else run()
    assert proc.returncode == want["returncode"], proc.stderr
    check_output(expected, proc.stdout)
    if want["by_value"]:
        assert "pip install 'ferropool[cloudpickle]'" in proc.stderr, proc.stderr
        with_cloudpickle = run()
        assert with_cloudpickle.returncode == 0, with_cloudpickle.stderr
        check_output(expected, with_cloudpickle.stdout)
