"""Why ferropool cannot run here, in words; the package's ``__init__`` checks
and asks this module only when it cannot.

On another operating system or interpreter, ``import ferropool`` raises an
ImportError saying what is missing and what is supported, before the compiled
extension is tried (whose own failure would only name a file). When the
extension is there but cannot be loaded (a wheel for another machine, a C
library older than the wheel's, a checkout never built), the ImportError names
the likely cause and the fix, with the loader's error as its cause.

The checks themselves stay in ``__init__``, so that an import that succeeds
(every program's, every spawned worker's) does not import this module.
"""

from __future__ import annotations

import sys

SUPPORTED = (
    "Supported: CPython 3.9 or later on Linux; wheels for x86_64 and aarch64 with glibc "
    "2.17 or later (manylinux2014) or musl 1.2 or later (musllinux_1_2); elsewhere on Linux, "
    "the sdist, built with a Rust toolchain. See Install in ferropool's getting-started "
    "guide (docs/getting-started.md)."
)

FROM_SOURCE = (
    "To build the extension on this machine, install a Rust toolchain (https://rustup.rs) "
    "and then `pip install --no-binary ferropool ferropool` (from a checkout: `pip install .` "
    "or `make install`)."
)


def missing() -> list[str]:
    """What ferropool needs that this interpreter is not, each with what it is."""
    lacking = []
    if not sys.platform.startswith("linux"):
        lacking.append(
            "Linux (its engine is built on fork, pidfd, memfd, SCM_RIGHTS and prctl); "
            f"this is {sys.platform}"
        )
    name = sys.implementation.name
    if name != "cpython":
        lacking.append(f"CPython (its extension is built for CPython's stable ABI); this is {name}")
    # requires-python keeps older ones out, unless the package was copied in.
    elif sys.version_info < (3, 9):  # noqa: UP036
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        lacking.append(f"CPython 3.9 or later; this is {version}")
    return lacking


def unsupported() -> ImportError:
    """The error for a system or interpreter that ferropool cannot run on."""
    lacking = missing() or [f"what it is built for; this is {sys.platform}, {sys.version}"]
    return ImportError(
        "ferropool needs " + ", and ".join(lacking) + ". " + SUPPORTED, name="ferropool"
    )


def likely_cause(error: ImportError) -> str:
    """Why the extension would not load, guessed from the loader's message."""
    text = str(error)
    if isinstance(error, ModuleNotFoundError) and error.name == "ferropool._native":
        return (
            "the extension is not there: a source checkout that was never built, "
            "or an install that lost its files"
        )
    if "GLIBC_" in text:
        return (
            "this system's C library (glibc) is older than the one the extension was built "
            "against (ferropool's wheels need glibc 2.17 or later)"
        )
    if "musl" in text:
        return "the extension was built for musl (Alpine) and this system's C library is glibc"
    if "Error relocating" in text or "symbol not found" in text:
        return (
            "the extension was built for glibc and this system's C library is musl (Alpine), "
            "or for another version of the package"
        )
    if "ELF" in text or "cannot open shared object file" in text:
        return "the extension was built for another CPU architecture, or its file is damaged"
    return "the extension does not fit this machine"


def unloadable(error: ImportError) -> ImportError:
    """The error for an extension that would not load (`error`, the loader's)."""
    return ImportError(
        f"ferropool's compiled extension (ferropool._native) could not be loaded: "
        f"{likely_cause(error)}. The loader said: {error}. {FROM_SOURCE} {SUPPORTED}",
        name="ferropool._native",
    )
