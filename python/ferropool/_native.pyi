"""Type stubs for ferropool's Rust extension (src/python/)."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union, final

__all__ = [
    "APPLY",
    "CANCELLED",
    "ENCODING_ERROR",
    "Engine",
    "EnginePayload",
    "EngineStopped",
    "HEADER_LEN",
    "Job",
    "KIND_EXIT",
    "KIND_FORGET",
    "KIND_FUNC",
    "KIND_PREPARE",
    "KIND_READY",
    "KIND_RESULT",
    "KIND_RETIRING",
    "KIND_SETUP",
    "KIND_TALLY",
    "KIND_TASK",
    "LIFELINE_ENV",
    "LOCAL_ERROR",
    "LargePayload",
    "MAP",
    "OK",
    "OK_OUT_OF_BAND",
    "OK_PACKED",
    "POOL_BROKEN",
    "PausedEngines",
    "PayloadWriter",
    "RAISED",
    "RAISED_UNPICKLABLE",
    "SHARED_PAYLOAD",
    "SOCKET_BUFFER",
    "SPAWN_FIRST_INHERITED_FD",
    "SPAWN_SOCKET_FD",
    "STARMAP",
    "TIMED_OUT",
    "WORKER_LOST",
    "WorkerChannel",
    "__version__",
    "die_with_parent",
    "lifeline_for_children",
    "map_populate_flag",
    "pack_numbers",
    "pause_engines",
    "platform_features",
    "unpack_numbers",
    "unpack_numbers_into",
]

__version__: str
HEADER_LEN: int
SHARED_PAYLOAD: int
SOCKET_BUFFER: int
# Frame kinds, outcome statuses, call modes (src/engine/protocol.rs).
APPLY: int
MAP: int
STARMAP: int
OK: int
RAISED: int
RAISED_UNPICKLABLE: int
ENCODING_ERROR: int
WORKER_LOST: int
POOL_BROKEN: int
TIMED_OUT: int
LOCAL_ERROR: int
CANCELLED: int
OK_OUT_OF_BAND: int
OK_PACKED: int
KIND_FUNC: int
KIND_TASK: int
KIND_FORGET: int
KIND_EXIT: int
KIND_PREPARE: int
KIND_SETUP: int
KIND_TALLY: int
KIND_READY: int
KIND_RESULT: int
KIND_RETIRING: int
SPAWN_SOCKET_FD: int
SPAWN_FIRST_INHERITED_FD: int
# A spawned worker's lifeline (the parent-death fallback, src/platform/).
LIFELINE_ENV: str

class EngineStopped(ValueError):
    """The engine has stopped and takes no more work."""

@final
class LargePayload:
    def load_with(self, loads: Callable[[memoryview], Any]) -> Any: ...
    def to_bytes(self) -> bytes: ...
    def __len__(self) -> int: ...

@final
class EnginePayload:
    def to_bytes(self) -> bytes: ...
    def in_shared_memory(self) -> bool: ...
    def __len__(self) -> int: ...

@final
class PayloadWriter:
    def __init__(self) -> None: ...
    def write(self, data: Any) -> int: ...
    def take(self) -> Union[bytes, EnginePayload]: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...

_Outcome = Tuple[int, int, Union[bytes, LargePayload]]

@final
class Engine:
    def __new__(cls, spec: Any) -> Engine: ...
    def notify_service(self, job: Job) -> None: ...
    def new_job(
        self,
        func: bytes,
        mode: int,
        has_callback: bool,
        notify_each: bool = False,
        notify_batch: int = 0,
    ) -> Job: ...
    def add_tasks(
        self, job: Job, start: int, payloads: List[Union[bytes, EnginePayload]], close: bool
    ) -> None: ...
    def cancel_queued(self, job: Job) -> None: ...
    def close(self) -> None: ...
    def terminate(self, kill: bool = False) -> None: ...
    def wait_finished(self, timeout: Optional[float] = None) -> bool: ...
    def broken(self) -> Optional[str]: ...
    def status(self) -> Tuple[str, Optional[str], List[int]]: ...
    def exit_code(self, pid: int) -> Optional[int]: ...
    def worker_alive(self, pid: int) -> bool: ...
    def stats(self) -> Dict[str, Any]: ...
    def service_next(
        self, timeout: Optional[float] = None
    ) -> Optional[Tuple[List[int], List[Tuple[int, int, int]]]]: ...
    def worker_forked(self, number: int, pid: Optional[int]) -> None: ...

@final
class Job:
    @property
    def id(self) -> int: ...
    def wait(self, timeout: Optional[float] = None) -> bool: ...
    def ready(self) -> bool: ...
    def complete(self) -> bool: ...
    def mark_ready(self) -> None: ...
    def take(self) -> List[_Outcome]: ...
    def next_outcomes(self, timeout: Optional[float] = None) -> Optional[List[_Outcome]]: ...
    def wait_room(self, limit: int, min_room: int = 1, timeout: Optional[float] = None) -> int: ...
    def stop_feeding(self) -> None: ...
    def release(self, n: int) -> None: ...
    def release_on_arrival(self) -> None: ...
    def add_local_error(self, index: int) -> None: ...
    def announce_outcomes(self) -> None: ...
    def counts(self) -> Tuple[int, int]: ...
    def changes(self) -> int: ...
    def settled(self) -> None: ...
    def wait_change(self, seen: int, timeout: Optional[float] = None) -> bool: ...

@final
class WorkerChannel:
    def __new__(cls, fd: int) -> WorkerChannel: ...
    def recv(self) -> Tuple[int, int, int, int, bytes]: ...
    def send_ready(self, pid: int) -> None: ...
    def serve(
        self,
        load: Callable[[bytes], Any],
        run: Callable[[int, Any, bytes], Tuple[Any, ...]],
        load_failed: Callable[[BaseException], Tuple[int, bytes]],
        max_rss: Optional[int] = None,
    ) -> None: ...

# Linux-only facilities and their fallbacks (src/platform/, docs/porting.md).
def lifeline_for_children() -> Optional[int]: ...
def die_with_parent(lifeline: Optional[int] = None) -> None: ...
def platform_features() -> Dict[str, str]: ...
def map_populate_flag() -> int: ...
def pack_numbers(list: List[Any]) -> Optional[bytes]:
    """`list` packed when it holds only ints within 64 bits or only floats
    (exact types), else None."""

def unpack_numbers(payload: Union[bytes, LargePayload]) -> List[Any]:
    """The list `pack_numbers` packed; ValueError for any other bytes."""

def unpack_numbers_into(
    payload: Union[bytes, LargePayload], target: List[Any], start: int, count: int
) -> int:
    """Writes the packed numbers into `target[start:start + count]` when
    there are exactly `count`; returns how many there are."""

@final
class PausedEngines:
    def resume(self) -> None: ...

def pause_engines() -> PausedEngines: ...
