"""CPython's own Pool and process-pool executor tests, run against ferropool.

    make conformance            # this interpreter (the Makefile's venv)
    python conformance/run.py --only 'fork/*Shutdown*' -v

Which tests: CPython's `_test_multiprocessing` Pool classes and every
`ProcessPool*` class of `test_concurrent_futures`, under fork, spawn and
forkserver. The test files come from the running interpreter's `Lib/test`,
or, where it lacks them, from the distribution's test-suite package
(Debian: `libpython3.X-testsuite`, fetched with `apt-get download` into
`.conformance/`); nothing of CPython's is kept in this repository.

How ferropool is substituted: a .pth file installed in this interpreter's
site-packages imports `_conformance_hook` in every Python process started
with FERROPOOL_CONFORMANCE_HOOK set (the test process, its workers, its
`multiprocessing.Process` children and its `python -I` scripts alike); the
hook makes `multiprocessing.Pool`, `get_context(...).Pool` and
`concurrent.futures.ProcessPoolExecutor` build ferropool's.

Each test class runs in a process of its own; a test that runs past
`--timeout` is a hang: its threads' stacks are printed, it counts as failed,
and the class goes on in a new process from the next test. Tests named in
`exclusions.txt` (each with its reason) are not run. The last line is
`N passed, M failed, K skipped`; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import importlib.util
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".conformance"
EXCLUSIONS = HERE / "exclusions.txt"
# Named to sort after the editable install's .pth (site reads them in name order).
PTH_NAME = "zz_ferropool_conformance.pth"
METHODS = ("fork", "spawn", "forkserver")
DEFAULT_TIMEOUT = 120.0

# _test_multiprocessing: the classes that test the process Pool, and single
# Pool tests of classes that test other things too.
MP_CLASSES = {
    "WithProcessesTestPool": None,
    "WithProcessesTestPoolWorkerErrors": None,
    "WithProcessesTestPoolWorkerLifetime": None,
    "TestInitializers": ["test_pool_initializer"],
    "TestStdinBadfiledescriptor": ["test_pool_in_process"],
}
EXECUTOR_CLASS_PREFIX = "ProcessPool"


# ----- finding the test files ----------------------------------------------


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def fetch_distribution_tests(minor: str) -> Optional[Path]:
    """Extracts `test_concurrent_futures` from Debian's test-suite package of
    this Python version into .conformance/; returns the folder that holds it."""
    target = CACHE / f"python{minor}-tests"
    if any(target.glob("test_concurrent_futures*")):
        return target
    package = f"libpython{minor}-testsuite"
    if shutil.which("apt-get") is None:
        return None
    download = CACHE / "download"
    download.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        done = subprocess.run(
            ["apt-get", "download", package], cwd=download, capture_output=True, text=True
        )
        if done.returncode == 0:
            break
        if attempt == 0:
            # The package lists may be missing or stale on a fresh machine.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    else:
        print(f"conformance: could not download {package}: {done.stderr.strip()}")
        return None
    debs = sorted(download.glob(f"{package}_*.deb"))
    extracted = CACHE / "extracted"
    shutil.rmtree(extracted, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(extracted)], check=True)
    source = extracted / "usr" / "lib" / f"python{minor}" / "test"
    found = list(source.glob("test_concurrent_futures*"))
    if not found:
        return None
    target.mkdir(parents=True, exist_ok=True)
    for path in found:
        if path.is_dir():
            shutil.copytree(path, target / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target / path.name)
    shutil.rmtree(extracted, ignore_errors=True)
    return target


# ----- the test process ------------------------------------------------------


def executor_modules() -> List[str]:
    """`test_concurrent_futures` is one module up to 3.11, a package after."""
    module = importlib.import_module("test.test_concurrent_futures")
    if not hasattr(module, "__path__"):
        return [module.__name__]
    return [
        f"{module.__name__}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if info.name.startswith("test_")
    ]


def start_method_of_class(module: str, cls: str) -> str:
    if module.startswith("conformance_mp_"):
        return module[len("conformance_mp_") :]
    for method in ("Forkserver", "Spawn", "Fork"):
        if cls.startswith(EXECUTOR_CLASS_PREFIX + method):
            return method.lower()
    return "?"


def list_tests() -> Dict[str, List[str]]:
    """{"module:Class": [test names]} of every selected class."""
    import unittest

    loader = unittest.TestLoader()
    selected: Dict[str, List[str]] = {}
    for method in METHODS:
        module = importlib.import_module(f"conformance_mp_{method}")
        for name, only in MP_CLASSES.items():
            names = loader.getTestCaseNames(getattr(module, name))
            selected[f"{module.__name__}:{name}"] = [n for n in names if only is None or n in only]
    executors = executor_modules() if _has_module("test.test_concurrent_futures") else []
    for module_name in executors:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if (
                name.startswith(EXECUTOR_CLASS_PREFIX)
                and isinstance(obj, type)
                and issubclass(obj, unittest.TestCase)
                and obj.__module__ == module_name
            ):
                selected[f"{module_name}:{name}"] = list(loader.getTestCaseNames(obj))
    return selected


def run_child(class_id: str, tests: List[str], timeout: float, out: str) -> None:
    """Runs `tests` of one class, writing one JSON line per event to `out`.
    A test still running after `timeout` seconds ends the process, stacks
    printed (faulthandler)."""
    import faulthandler
    import unittest

    events = open(out, "a", buffering=1)

    def emit(**event: object) -> None:
        events.write(json.dumps(event) + "\n")

    class Recorder(unittest.TestResult):
        def startTest(self, test: unittest.TestCase) -> None:
            faulthandler.dump_traceback_later(timeout, exit=True)
            emit(event="start", test=test._testMethodName)
            super().startTest(test)

        def stopTest(self, test: unittest.TestCase) -> None:
            super().stopTest(test)
            # The next period covers tear-downs and the next test's set-up.
            faulthandler.dump_traceback_later(timeout, exit=True)

        def _name(self, test: object) -> str:
            return getattr(test, "_testMethodName", None) or str(test)

        def _record(self, test: object, outcome: str, detail: str = "") -> None:
            emit(event="result", test=self._name(test), outcome=outcome, detail=detail)

        def addSuccess(self, test):  # type: ignore[no-untyped-def]
            self._record(test, "passed")

        def addFailure(self, test, err):  # type: ignore[no-untyped-def]
            super().addFailure(test, err)
            self._record(test, "failed", self.failures[-1][1])

        def addError(self, test, err):  # type: ignore[no-untyped-def]
            super().addError(test, err)
            self._record(test, "failed", self.errors[-1][1])

        def addSkip(self, test, reason):  # type: ignore[no-untyped-def]
            self._record(test, "skipped", reason)

        def addExpectedFailure(self, test, err):  # type: ignore[no-untyped-def]
            self._record(test, "passed", "expected failure")

        def addUnexpectedSuccess(self, test):  # type: ignore[no-untyped-def]
            self._record(test, "failed", "unexpected success")

        def addSubTest(self, test, subtest, err):  # type: ignore[no-untyped-def]
            if err is not None:
                super().addSubTest(test, subtest, err)
                failures = (
                    self.failures if issubclass(err[0], test.failureException) else self.errors
                )
                self._record(test, "failed", f"{subtest}: {failures[-1][1]}")

    module_name, cls_name = class_id.split(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name)
    faulthandler.dump_traceback_later(timeout, exit=True)
    suite = unittest.TestSuite(cls(name) for name in tests)
    suite.run(Recorder())
    faulthandler.cancel_dump_traceback_later()
    emit(event="done")


# ----- the driver ------------------------------------------------------------


class Exclusions:
    """`exclusions.txt`: one test per line, `[method/]Class.test  # reason`,
    shell-style wildcards allowed; a line without a reason is an error."""

    def __init__(self, path: Path) -> None:
        self.rules: List[Tuple[str, str]] = []
        self.used: Dict[str, int] = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pattern, _, reason = line.partition("#")
            if not reason.strip():
                raise SystemExit(f"{path}:{number}: an exclusion needs its reason after '#'")
            self.rules.append((pattern.strip(), reason.strip()))
            self.used[pattern.strip()] = 0

    def match(self, method: str, cls: str, test: str) -> Optional[str]:
        for pattern, reason in self.rules:
            target = f"{method}/{cls}.{test}" if "/" in pattern else f"{cls}.{test}"
            if fnmatch.fnmatchcase(target, pattern):
                self.used[pattern] += 1
                return reason
        return None


class Tally:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}
        self.failures: List[Tuple[str, str]] = []
        self.lock = threading.Lock()


def _label(class_id: str) -> str:
    module, cls = class_id.split(":")
    return f"{start_method_of_class(module, cls)}/{cls}"


def drive_class(
    class_id: str, tests: List[str], timeout: float, env: Dict[str, str], tally: Tally
) -> None:
    """Runs one class's tests in child processes until each has an outcome."""
    started_at = time.monotonic()
    outcomes: Dict[str, Tuple[str, str]] = {}
    extra: List[Tuple[str, str, str]] = []  # class-level failures (fixtures, hangs)
    remaining = list(tests)
    with tempfile.TemporaryDirectory(prefix="ferropool-conformance-") as tmp:
        while remaining:
            out = os.path.join(tmp, "events.jsonl")
            log = os.path.join(tmp, "output.log")
            if os.path.exists(out):
                os.unlink(out)
            args = [sys.executable, str(HERE / "run.py"), "--child", class_id]
            args += ["--tests", ",".join(remaining), "--timeout", str(timeout), "--out", out]
            with open(log, "w") as log_file:
                proc = subprocess.Popen(
                    args,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
                # The child's own guard ends a hang; this one only covers a
                # child that cannot even print its stacks.
                try:
                    rc = proc.wait(timeout=timeout * (len(remaining) + 2))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
            _kill_group(proc.pid)
            events = _read_events(out)
            output_tail = _tail(log)
            current = None
            done = False
            for event in events:
                if event["event"] == "start":
                    current = event["test"]
                elif event["event"] == "result":
                    name = event["test"]
                    if name in remaining:
                        if outcomes.get(name, ("passed",))[0] != "failed":
                            outcomes[name] = (event["outcome"], event["detail"])
                        if name == current:
                            current = None
                    else:
                        extra.append((name, "failed", event["detail"]))
                elif event["event"] == "done":
                    done = True
            if current is not None and current not in outcomes:
                outcomes[current] = (
                    "failed",
                    f"hung or crashed: no outcome (child rc {rc}, guard {timeout:.0f} s); "
                    f"the end of its output:\n{output_tail}",
                )
            left = [t for t in remaining if t not in outcomes]
            ran_any = any(e["event"] == "start" for e in events)
            if not left and not done:
                extra.append(("<tear-down>", "failed", f"child rc {rc}:\n{output_tail}"))
            if done or not ran_any:
                # Finished, or nothing here can run (a class fixture failed).
                for name in left:
                    outcomes[name] = ("failed", f"not run (child rc {rc}):\n{output_tail}")
                if not done:
                    extra.append(("<class>", "failed", f"child rc {rc}:\n{output_tail}"))
                break
            remaining = left
    label = _label(class_id)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    with tally.lock:
        for name in tests:
            outcome, detail = outcomes.get(name, ("failed", "no outcome"))
            counts[outcome] += 1
            if outcome == "failed":
                tally.failures.append((f"{label}.{name}", detail))
            elif tally.verbose:
                print(f"  {outcome:7} {label}.{name}", flush=True)
        for name, _outcome, detail in extra:
            counts["failed"] += 1
            tally.failures.append((f"{label} {name}", detail))
        for key, value in counts.items():
            tally.counts[key] += value
        took = time.monotonic() - started_at
        print(
            f"{label}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped ({took:.1f} s)",
            flush=True,
        )


def _kill_group(pgid: int) -> None:
    """Workers or children a hung test left behind go with its process."""
    try:
        os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _read_events(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                pass  # a line cut short by the child's end
    return events


def _tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def install_hook() -> None:
    """The .pth line that imports the hook where FERROPOOL_CONFORMANCE_HOOK
    is set (inert otherwise)."""
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    line = (
        "import os, sys; os.environ.get('FERROPOOL_CONFORMANCE_HOOK') and "
        "(sys.path.append(os.environ['FERROPOOL_CONFORMANCE_HOOK']) or "
        "__import__('_conformance_hook'))\n"
    )
    if not pth.exists() or pth.read_text() != line:
        pth.write_text(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only tests whose 'method/Class.test' matches (wildcards)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds one test may run before it counts as hung",
    )
    parser.add_argument("--jobs", "-j", type=int, default=1, help="test classes run at once")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="run what this interpreter has when a test suite cannot be found",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tests", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.list:
        print(json.dumps(list_tests()))
        return 0
    if args.child:
        run_child(args.child, args.tests.split(","), args.timeout, args.out)
        return 0

    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = dict(os.environ, FERROPOOL_CONFORMANCE_HOOK=str(HERE))
    if not _has_module("test._test_multiprocessing"):
        print(f"conformance: Python {minor} has no test._test_multiprocessing")
        return 1
    if not _has_module("test.test_concurrent_futures"):
        extra = fetch_distribution_tests(minor)
        if extra is not None:
            env["FERROPOOL_CONFORMANCE_TESTPATH"] = str(extra)
            print(f"conformance: test_concurrent_futures from {package_note(minor)}")
        elif args.allow_missing:
            print(
                f"conformance: Python {minor}: test_concurrent_futures not found "
                "(neither in Lib/test nor as a distribution package): executor tests NOT run"
            )
        else:
            print(
                f"conformance: Python {minor}: test_concurrent_futures not found "
                "(neither in Lib/test nor as a distribution package); "
                "--allow-missing runs the Pool tests alone"
            )
            return 1
    install_hook()

    listing = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--list"], env=env, capture_output=True, text=True
    )
    if listing.returncode != 0:
        print(listing.stdout, listing.stderr)
        return 1
    selected: Dict[str, List[str]] = json.loads(listing.stdout.splitlines()[-1])

    exclusions = Exclusions(EXCLUSIONS)
    plan: List[Tuple[str, List[str]]] = []
    excluded = 0
    for class_id, tests in selected.items():
        module, cls = class_id.split(":")
        method = start_method_of_class(module, cls)
        keep = []
        for test in tests:
            if args.only and not any(
                fnmatch.fnmatchcase(f"{method}/{cls}.{test}", p) for p in args.only
            ):
                continue
            if exclusions.match(method, cls, test) is not None:
                excluded += 1
                continue
            keep.append(test)
        if keep:
            plan.append((class_id, keep))

    tally = Tally(args.verbose)
    total = sum(len(t) for _, t in plan)
    print(
        f"conformance: Python {minor}, {total} tests in {len(plan)} classes, "
        f"{excluded} excluded by {len(exclusions.rules)} lines of {EXCLUSIONS.name}",
        flush=True,
    )
    queue = list(plan)
    queue_lock = threading.Lock()

    def work() -> None:
        while True:
            with queue_lock:
                if not queue:
                    return
                class_id, tests = queue.pop(0)
            drive_class(class_id, tests, args.timeout, env, tally)

    threads = [threading.Thread(target=work) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    if not args.only:
        # Other Python versions carry other tests: a note, not a failure.
        for pattern in [p for p, n in exclusions.used.items() if n == 0]:
            print(f"conformance: exclusion matches no test of Python {minor}: {pattern}")
    for name, detail in tally.failures:
        print(f"\n======== FAILED {name}\n{detail.rstrip()}")
    c = tally.counts
    print(f"\n{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
    return 1 if c["failed"] else 0


def package_note(minor: str) -> str:
    return f"the distribution's libpython{minor}-testsuite (in {CACHE.name}/)"


if __name__ == "__main__":
    sys.exit(main())
