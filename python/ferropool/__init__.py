"""ferropool: a drop-in ``multiprocessing.Pool`` and
``concurrent.futures.ProcessPoolExecutor`` with a Rust core.

    import ferropool as multiprocessing      # everything else is the stdlib's
    from ferropool import Pool, ProcessPoolExecutor

Every name of the stdlib's ``multiprocessing`` is available here; ``Pool`` and
``get_context`` are ferropool's, the rest are re-exported unchanged.
"""

from __future__ import annotations

# First of all, on another system or interpreter, an ImportError that says what
# is missing and what is supported; then the extension, loaded here once so
# that a failure to load it is explained in one place (a wheel for another
# machine, a checkout never built). _platform.py words both; it is imported
# only then.
import importlib
import sys as _sys

if (
    not _sys.platform.startswith("linux")
    or _sys.implementation.name != "cpython"
    or _sys.version_info < (3, 9)
):
    from ._platform import unsupported

    raise unsupported()
try:
    importlib.import_module("._native", __name__)
except ImportError as e:
    from ._platform import unloadable

    raise unloadable(e) from e

import multiprocessing as _mp  # noqa: E402
from multiprocessing import (  # noqa: E402, F401  (re-exported for drop-in use)
    Array,
    AuthenticationError,
    Barrier,
    BoundedSemaphore,
    BufferTooShort,
    Condition,
    Event,
    JoinableQueue,
    Lock,
    Manager,
    Pipe,
    Process,
    ProcessError,
    Queue,
    RawArray,
    RawValue,
    RLock,
    Semaphore,
    SimpleQueue,
    TimeoutError,
    Value,
    active_children,
    allow_connection_pickling,
    cpu_count,
    current_process,
    freeze_support,
    get_all_start_methods,
    get_logger,
    get_start_method,
    log_to_stderr,
    parent_process,
    reducer,
    set_executable,
    set_forkserver_preload,
    set_start_method,
)

# `typing` only for the type checker: workers import this package to start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._errors import (
        BrokenProcessPool,
        RemoteTaskError,
        TaskTimeoutError,
        TaskTransferError,
        WorkerLostError,
    )
    from ._patching import patch as patch
    from ._patching import patched as patched
    from ._patching import unpatch as unpatch
    from .context import get_context as get_context
    from .executor import ProcessPoolExecutor as ProcessPoolExecutor
    from .pool import Pool as Pool

# ferropool's own names, imported on first use: a worker imports this
# package to start, and needs none of them (spawn and forkserver start-up).
_LAZY = {
    "Pool": ".pool",
    "ProcessPoolExecutor": ".executor",
    "get_context": ".context",
    "BrokenProcessPool": "._errors",
    "RemoteTaskError": "._errors",
    "TaskTimeoutError": "._errors",
    "TaskTransferError": "._errors",
    "WorkerLostError": "._errors",
    "patch": "._patching",
    "unpatch": "._patching",
    "patched": "._patching",
}

# The version is the Rust crate's (Cargo.toml, which pyproject.toml reads too).
_LAZY["__version__"] = "._native"

__all__ = list(_mp.__all__) + [
    "BrokenProcessPool",
    "ProcessPoolExecutor",
    "RemoteTaskError",
    "TaskTimeoutError",
    "TaskTransferError",
    "WorkerLostError",
    "patch",
    "patched",
    "unpatch",
]


def __dir__() -> list[Any]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    # ferropool's own submodules (`ferropool.pool`, ...) are imported on first
    # use too; they come before the stdlib's of the same name.
    own = f"{__name__}.{name}"
    try:
        return importlib.import_module(own)
    except ModuleNotFoundError as e:
        if e.name != own:
            raise
    # `ferropool.shared_memory`, `ferropool.managers`, ...: the stdlib's submodules.
    try:
        return importlib.import_module(f"multiprocessing.{name}")
    except ImportError:
        raise AttributeError(f"module 'ferropool' has no attribute {name!r}") from None
