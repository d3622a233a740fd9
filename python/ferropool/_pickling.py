"""Pickling what goes to the workers, with errors that name the culprit.

Everything a task needs is pickled in the caller's thread before anything is
sent. When that fails, the error keeps its type (TypeError, AttributeError,
PicklingError...) but its message says which object could not be sent: the
function, argument 2, keyword argument 'x', item 17 of the input. Finding the
culprit costs extra pickling only on that error path.
"""

from __future__ import annotations

import copyreg
import io
import mmap
import pickle
import struct
import sys
import threading
import types
from multiprocessing.reduction import ForkingPickler

from . import _native

# `typing` only for the type checker: workers import this module at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# Protocol 5 (Python 3.8+) on both sides of every pool: large buffers
# (numpy arrays, bytearray) are written in one piece, not copied first.
PROTOCOL = 5


class _Pickler(pickle.Pickler):
    """Pickles as ``ForkingPickler`` (same reducers: copyreg's and the ones
    multiprocessing registers for connections, sockets, ...), without copying
    its dispatch table for every object pickled: the merged table is built
    once and rebuilt only when either source changes size."""

    _table: Dict[Any, Any] = {}
    _sizes: Tuple[int, int] = (-1, -1)

    @classmethod
    def table(cls) -> Dict[Any, Any]:
        extra = ForkingPickler._extra_reducers  # type: ignore[attr-defined]
        sizes = (len(copyreg.dispatch_table), len(extra))
        if sizes != cls._sizes:
            merged = dict(copyreg.dispatch_table)
            merged.update(extra)
            cls._table, cls._sizes = merged, sizes
        return cls._table


class _Reusable(threading.local):
    """One pickler per thread, reused (memo cleared) for every dumps: making
    a pickler costs more than pickling a small task. It writes to `sink`:
    a BytesIO, or an engine PayloadWriter. With `out_of_band`, large buffers
    (numpy arrays) are kept out of the stream, in `buffers` (see
    dumps_result)."""

    def __init__(self, make_sink: Callable[[], Any], out_of_band: bool = False) -> None:
        self.sink = make_sink()
        self.buffers: List[memoryview] = []
        callback = self._keep_out_of_band if out_of_band else None
        self.pickler = _Pickler(self.sink, PROTOCOL, buffer_callback=callback)
        self.table: Dict[Any, Any] = {}
        self.busy = False

    def done(self) -> None:
        """Ready for the next dumps (a BytesIO sink is emptied)."""
        for b in self.buffers:
            b.release()
        self.buffers = []
        self.pickler.clear_memo()
        if isinstance(self.sink, io.BytesIO):
            self.sink.seek(0)
            self.sink.truncate()
        self.busy = False

    def _keep_out_of_band(self, buffer: pickle.PickleBuffer) -> bool:
        """Returns False (out of band) for a large, writable, contiguous
        buffer that unpickles into a view of it (numpy); True keeps it in
        the stream, as usual."""
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous
            return True
        if raw.readonly or raw.nbytes < OUT_OF_BAND_MIN or type(raw.obj) is bytearray:
            raw.release()
            return True
        self.buffers.append(raw)
        return False


_reusable = _Reusable(io.BytesIO)
_for_engine = _Reusable(_native.PayloadWriter)
_for_results = _Reusable(io.BytesIO, out_of_band=True)

# Results: a writable, contiguous buffer of this size or more (a numpy
# array's data) travels out of band, and the parent copies it into memory
# mapped for it in one system call, faulted in without the GIL (mmap with
# MAP_POPULATE), instead of unpickling it into a bytearray whose fresh pages
# fault one by one while the GIL is held (measured, 8 MiB kept: 2.9 against
# 4.6 ms, of which 2.3 without the GIL). The array's base is that mmap.
OUT_OF_BAND_MIN = 1 << 20
# count of buffers, length of the pickle stream; then one length per buffer.
_OUT_OF_BAND_HEADER = struct.Struct("<IQ")


# Objects built only of these types pickle the same with or without
# multiprocessing's reducers (the pickler never consults a dispatch table for
# them), so plain `pickle.dumps` does, at a fraction of the cost.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict})
# Looking through a container costs time too: only small ones are checked.
_PLAIN_CHECK_MAX = 16
# Larger bytes go to the engine's recycled buffers (dumps_payload).
_PLAIN_BYTES_MAX = 1 << 16


def _is_plain(obj: Any, depth: int = 2) -> bool:
    t = type(obj)
    if t in _PLAIN:
        return t is not bytes or len(obj) < _PLAIN_BYTES_MAX
    if not depth or t not in _PLAIN_CONTAINERS or len(obj) > _PLAIN_CHECK_MAX:
        return False
    for x in obj.values() if t is dict else obj:
        tx = type(x)
        if tx in _PLAIN:
            if tx is bytes and len(x) >= _PLAIN_BYTES_MAX:
                return False
        elif not _is_plain(x, depth - 1):
            return False
    # dict keys: only plain scalars
    return t is not dict or all(type(k) in _PLAIN for k in obj)


def _fresh_dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    pickler = _Pickler(buf, PROTOCOL)
    pickler.dispatch_table = _Pickler.table()
    pickler.dump(obj)
    return buf.getvalue()


def _dump_reusing(r: _Reusable, obj: Any) -> None:
    table = _Pickler.table()
    if r.table is not table:
        r.pickler.dispatch_table = r.table = table
    r.pickler.dump(obj)


def dumps(obj: Any) -> bytes:
    """Pickles as ``ForkingPickler.dumps`` does (same reducers; protocol 5)."""
    if _is_plain(obj):
        return pickle.dumps(obj, PROTOCOL)
    r = _reusable
    if r.busy:  # a reducer pickling something itself: use a fresh pickler
        return _fresh_dumps(obj)
    r.busy = True
    try:
        _dump_reusing(r, obj)
        pickled: bytes = r.sink.getvalue()
        return pickled
    finally:
        r.done()


def dumps_payload(obj: Any) -> Any:
    """``dumps`` for a task payload: `bytes`, or, when large, an engine
    payload pickled straight into a recycled buffer (see _native's
    PayloadWriter), which ``Engine.add_tasks`` takes as it takes bytes."""
    if _is_plain(obj):
        return pickle.dumps(obj, PROTOCOL)
    r = _for_engine
    if r.busy:
        return _fresh_dumps(obj)
    r.busy = True
    try:
        _dump_reusing(r, obj)
        return r.sink.take()
    except BaseException:
        r.sink.clear()
        raise
    finally:
        r.done()


def dumps_result(obj: Any) -> Tuple[bool, bytes]:
    """Pickles a task's result (in a worker): (False, the pickle), or, when
    it holds large buffers (numpy arrays), (True, a header giving their
    count and lengths and the stream's length, the pickle stream, then each
    buffer): see OUT_OF_BAND_MIN and loads_out_of_band."""
    if _is_plain(obj):
        return False, pickle.dumps(obj, PROTOCOL)
    r = _for_results
    if r.busy:
        return False, _fresh_dumps(obj)
    r.busy = True
    try:
        _dump_reusing(r, obj)
        stream = r.sink.getvalue()
        if not r.buffers:
            return False, stream
        lengths = [b.nbytes for b in r.buffers]
        header = _OUT_OF_BAND_HEADER.pack(len(lengths), len(stream))
        header += struct.pack(f"<{len(lengths)}Q", *lengths)
        return True, b"".join([header, stream, *r.buffers])
    finally:
        r.done()


def loads_out_of_band(payload: Any) -> Any:
    """Unpickles what dumps_result made with buffers out of band (`bytes`,
    or a lent memoryview): each buffer is copied into an anonymous mapping
    of its own (faulted in by the mmap call, without the GIL), and the value
    is built on those."""
    data = memoryview(payload)
    count, stream_len = _OUT_OF_BAND_HEADER.unpack_from(data, 0)
    lengths = struct.unpack_from(f"<{count}Q", data, _OUT_OF_BAND_HEADER.size)
    stream_at = _OUT_OF_BAND_HEADER.size + 8 * count
    start = stream_at + stream_len
    if start + sum(lengths) != len(data):
        raise pickle.UnpicklingError("out-of-band buffers of the wrong length")
    buffers = []
    # 0 where MAP_POPULATE is not used (see src/platform/memory.rs): the
    # pages then fault in one by one as the buffer is copied.
    populate = _native.map_populate_flag()
    for n in lengths:
        mapped = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | populate)
        with data[start : start + n] as part:  # released at once: `data` is lent
            mapped[:] = part
        buffers.append(mapped)
        start += n
    with data[stream_at : stream_at + stream_len] as stream:
        return pickle.loads(stream, buffers=buffers)


def _short(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _picklable(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


def _named(error: Exception, what: str) -> Exception:
    message = f"cannot send {what} to a worker: {error}"
    try:
        named = type(error)(message)
    except Exception:
        named = pickle.PicklingError(message)
    named.__cause__ = error
    return named


# A module-level function pickles as a reference (its module and name): the
# same bytes every time, so they are kept, and a later call only checks what
# pickling would check (the name still leads to this very function), at a
# tenth of the cost of pickling it again (each apply_async pickles its
# function). Cleared when full: only the first functions of a program that
# makes many are kept.
_FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType)
_by_reference: Dict[Any, Tuple[str, str, bytes]] = {}
_BY_REFERENCE_MAX = 256


def _named_in_module(func: Any, module: Any, name: Any) -> bool:
    """Whether `func` is the attribute `name` of module `module` (top level)."""
    if type(module) is not str or type(name) is not str or "." in name:
        return False
    found = sys.modules.get(module)
    return found is not None and getattr(found, name, None) is func


def dumps_function(func: Any) -> bytes:
    kept = _by_reference.get(func)
    if kept is not None:
        kept_module, kept_name, pickled = kept
        if (
            func.__module__ == kept_module
            and func.__qualname__ == kept_name
            and _named_in_module(func, kept_module, kept_name)
            and type(func) not in _Pickler.table()
        ):
            return pickled
        del _by_reference[func]
    try:
        pickled = dumps(func)
    except Exception as e:
        raise _named(e, f"the function {_short(func)}") from e
    if type(func) in _FUNCTION_TYPES and type(func) not in _Pickler.table():
        where: Any = getattr(func, "__module__", None)
        name: Any = getattr(func, "__qualname__", None)
        if _named_in_module(func, where, name):
            if len(_by_reference) >= _BY_REFERENCE_MAX:
                _by_reference.clear()
            _by_reference[func] = (where, name, pickled)
    return pickled


# Scalars that pickle the same with multiprocessing's reducers or without
# (see _PLAIN), of any size: a call with only these as positional arguments
# (the common apply_async(f, (i,))) skips looking through its arguments.
_PLAIN_SCALARS = frozenset({int, float, str, bool, type(None)})


def dumps_call(
    args: tuple[Any, ...], kwds: dict[str, Any], dump: Callable[[Any], Any] = dumps_payload
) -> Any:
    """The pickled ``(args, kwds)`` of a call, by `dump` (an engine payload
    when large; `dumps` for plain bytes)."""
    if not kwds and len(args) <= _PLAIN_CHECK_MAX:
        for arg in args:
            if type(arg) not in _PLAIN_SCALARS:
                break
        else:
            return pickle.dumps((args, kwds), PROTOCOL)
    try:
        return dump((args, kwds))
    except Exception as e:
        raise _named(e, _culprit_in_call(args, kwds)) from e


def _culprit_in_call(args: tuple[Any, ...], kwds: dict[str, Any]) -> str:
    for i, arg in enumerate(args):
        if not _picklable(arg):
            return f"argument {i} ({_short(arg)})"
    for key, value in kwds.items():
        if not _picklable(value):
            return f"keyword argument {key!r} ({_short(value)})"
    return "the call's arguments"


def chunk_error(error: Exception, chunk: Sequence[Any], first_index: int) -> Exception:
    """The error for a chunk of map input that could not be pickled."""
    culprit: Optional[str] = None
    for i, item in enumerate(chunk):
        if not _picklable(item):
            culprit = f"item {first_index + i} of the input ({_short(item)})"
            break
    return _named(error, culprit or f"input items {first_index}..{first_index + len(chunk) - 1}")


def dumps_chunk(
    chunk: Sequence[Any], first_index: int, dump: Callable[[Any], Any] = dumps_payload
) -> Any:
    try:
        return dump(chunk)
    except Exception as e:
        raise chunk_error(e, chunk, first_index) from e
