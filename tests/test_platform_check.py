"""`import ferropool` where it cannot run: on another operating system or
interpreter, an ImportError saying what is missing and what is supported,
raised before the compiled extension is tried; with an extension that will not
load, an ImportError naming the likely cause and the fix, chained to the
loader's own error. Each case runs in a fresh interpreter that pretends."""

from __future__ import annotations

import json
import textwrap

import pytest
from _support import run_python
from ferropool._platform import likely_cause

# Run in the child after its pretence: imports ferropool and reports what it raised.
REPORT = textwrap.dedent(
    """
    import json, sys
    try:
        import ferropool
    except ImportError as e:
        cause = e.__cause__
        print(json.dumps({
            "message": str(e),
            "name": e.name,
            "cause": None if cause is None else [type(cause).__name__, str(cause)],
            "native_loaded": "ferropool._native" in sys.modules,
        }))
    else:
        print(json.dumps(None))
    """
)

SUPPORTED = [
    "Supported: CPython 3.9 or later on Linux",
    "x86_64 and aarch64",
    "glibc 2.17",
    "musl 1.2",
    "docs/getting-started.md",
]

PRETEND_PYPY = textwrap.dedent(
    """
    import sys, types
    implementation = types.SimpleNamespace(**vars(sys.implementation))
    implementation.name = "pypy"
    sys.implementation = implementation
    """
)


def import_after(pretence: str) -> dict:
    proc = run_python("-c", textwrap.dedent(pretence) + REPORT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report is not None, "import ferropool succeeded"
    return report


@pytest.mark.parametrize(
    "pretence, expected",
    [
        (
            "import sys; sys.platform = 'darwin'",
            ["ferropool needs Linux", "fork, pidfd, memfd", "this is darwin"],
        ),
        ("import sys; sys.platform = 'win32'", ["ferropool needs Linux", "this is win32"]),
        (PRETEND_PYPY, ["ferropool needs CPython", "this is pypy"]),
        (
            "import sys; sys.version_info = (3, 8, 18, 'final', 0)",
            ["ferropool needs CPython 3.9 or later; this is 3.8"],
        ),
        (
            "import sys; sys.platform = 'darwin'\n" + PRETEND_PYPY,
            ["needs Linux", "this is darwin, and CPython", "this is pypy"],
        ),
    ],
    ids=["darwin", "windows", "pypy", "python-3.8", "darwin-pypy"],
)
def test_an_unsupported_platform_is_named_before_the_extension_is_tried(pretence, expected):
    report = import_after(pretence)
    for text in expected + SUPPORTED:
        assert text in report["message"]
    assert report["name"] == "ferropool"
    assert report["cause"] is None
    assert not report["native_loaded"]


# A meta path finder in the child that fails ferropool._native's import as the
# loader would, with the exception given.
BROKEN_NATIVE = """
import sys

class BrokenNative:
    def find_spec(self, name, path=None, target=None):
        if name == "ferropool._native":
            raise {error}
        return None

sys.meta_path.insert(0, BrokenNative())
"""

LOADER_ERRORS = {
    "old-glibc": (
        "ImportError(\"/lib64/libc.so.6: version `GLIBC_2.28' not found "
        '(required by _native.abi3.so)")',
        "this system's C library (glibc) is older than the one the extension was built against",
    ),
    "other-arch": (
        "ImportError('_native.abi3.so: wrong ELF class: ELFCLASS32')",
        "the extension was built for another CPU architecture",
    ),
    "musl-on-glibc": (
        "ImportError('libc.musl-x86_64.so.1: cannot open shared object file')",
        "the extension was built for musl (Alpine)",
    ),
    "glibc-on-musl": (
        "ImportError('Error relocating _native.abi3.so: __memcpy_chk: symbol not found')",
        "the extension was built for glibc and this system's C library is musl",
    ),
    "not-built": (
        "ModuleNotFoundError(\"No module named 'ferropool._native'\", name='ferropool._native')",
        "the extension is not there: a source checkout that was never built",
    ),
}


@pytest.mark.parametrize("case", list(LOADER_ERRORS))
def test_an_extension_that_will_not_load_is_explained(case):
    error, cause = LOADER_ERRORS[case]
    report = import_after(BROKEN_NATIVE.format(error=error))
    message = report["message"]
    assert message.startswith(
        "ferropool's compiled extension (ferropool._native) could not be loaded: " + cause
    )
    assert "pip install --no-binary ferropool ferropool" in message
    assert "Rust toolchain" in message
    for text in SUPPORTED:
        assert text in message
    assert report["name"] == "ferropool._native"
    # The loader's own error is kept, both in the message and as the cause.
    original_type, original_text = report["cause"]
    assert original_type == error.split("(")[0]
    assert original_text in message


def test_the_loaders_error_is_shown_as_the_cause():
    broken = BROKEN_NATIVE.format(error="ImportError('invalid ELF header')")
    proc = run_python("-c", broken + "\nimport ferropool\n")
    assert proc.returncode == 1
    assert "ImportError: invalid ELF header" in proc.stderr
    assert "The above exception was the direct cause" in proc.stderr
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last.startswith("ImportError: ferropool's compiled extension (ferropool._native)")


def test_an_unrecognised_loader_error_still_gets_the_fix():
    assert likely_cause(ImportError("something else")) == (
        "the extension does not fit this machine"
    )
    # A missing module other than the extension itself is not "never built".
    other = ModuleNotFoundError("No module named 'x'", name="x")
    assert likely_cause(other) == "the extension does not fit this machine"


def test_a_supported_import_does_not_load_the_wording():
    proc = run_python(
        "-c", "import sys, ferropool; print(sorted(m for m in sys.modules if 'ferropool' in m))"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.replace("'", '"')) == ["ferropool", "ferropool._native"]
