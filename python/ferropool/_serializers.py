"""How one pool or executor pickles what it sends to its workers: the
function (once per job), each call's arguments, each chunk of map input.

``serializer=`` (keyword-only on ``Pool`` and ``ProcessPoolExecutor``):

* None (the default): the standard pickler (as the stdlib's pools, with
  ferropool's fast paths, see _pickling); what it cannot pickle (a lambda, a
  closure, a function defined in an interactive ``__main__``) goes through
  cloudpickle when it is installed; without it, the error says how to get it.
* ``"pickle"``: the standard pickler only.
* ``"cloudpickle"``: cloudpickle for functions, arguments and input.
* any object with ``dumps`` and ``loads`` (a module such as ``dill``, or an
  object that pickles): its ``dumps`` in the caller, its ``loads`` in the
  workers.

cloudpickle writes ordinary pickle streams (the worker's ``pickle.loads``
reads them, importing cloudpickle there), so only a custom serializer
changes what workers do. Results always travel by the standard pickler,
with its fast paths.
"""

from __future__ import annotations

import sys
import types

from . import _pickling

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

INSTALL_HINT = (
    "the standard pickler sends functions and classes by name only, so a lambda, a closure "
    "or one defined in an interactive session cannot go; install cloudpickle "
    "(pip install 'ferropool[cloudpickle]') and ferropool sends them by value"
)


class Serializer:
    """Pickles a pool's functions, call arguments and map chunks; the errors
    name the object that could not be sent (see _pickling)."""

    # What WorkerSetup carries: None for streams `pickle.loads` reads.
    for_workers: Any = None
    # How a call's arguments or a chunk become a payload: large ones go into
    # the engine's memory (see _pickling.dumps_payload) unless `as_bytes`.
    _dump: Callable[[Any], Any] = staticmethod(_pickling.dumps_payload)

    def as_bytes(self) -> Serializer:
        """The same serializer, making `bytes` of everything (for a cluster,
        where nothing goes through the local engine)."""
        import copy

        plain = copy.copy(self)
        plain._dump = _pickling.dumps
        return plain

    def function(self, func: Any) -> bytes:
        return _pickling.dumps_function(func)

    def call(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        return _pickling.dumps_call(args, kwds, self._dump)

    def chunk(self, chunk: Sequence[Any], first_index: int) -> Any:
        return _pickling.dumps_chunk(chunk, first_index, self._dump)


class _WithFallback(Serializer):
    """The default: the standard pickler, then cloudpickle for what it
    cannot pickle."""

    def function(self, func: Any) -> bytes:
        if _defined_interactively(func):
            # By name it would pickle, but a worker that did not fork after
            # it was defined cannot find it: by value when cloudpickle is here.
            try:
                import cloudpickle
            except ImportError:
                pass
            else:
                return _cloudpickle_dumps(cloudpickle, func)
        try:
            return _pickling.dumps_function(func)
        except Exception as e:
            return _by_value(e, func, func)

    def call(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        try:
            return _pickling.dumps_call(args, kwds, self._dump)
        except Exception as e:
            return _by_value(e, (args, kwds), *args, *kwds.values())

    def chunk(self, chunk: Sequence[Any], first_index: int) -> Any:
        try:
            return _pickling.dumps_chunk(chunk, first_index, self._dump)
        except Exception as e:
            return _by_value(e, chunk, *chunk)


def _defined_interactively(func: Any) -> bool:
    """A function of an interactive session's `__main__` (a REPL, a
    notebook, `python -c`): one without a file to import it from."""
    if getattr(func, "__module__", None) != "__main__":
        return False
    return getattr(sys.modules.get("__main__"), "__file__", None) is None


def _by_value(error: Exception, obj: Any, *suspects: Any) -> bytes:
    """`obj` through cloudpickle, after the standard pickler raised `error`
    (already naming the culprit). Without cloudpickle, `error` is raised,
    with the hint when one of `suspects` is the kind of object cloudpickle
    would send."""
    try:
        import cloudpickle
    except ImportError:
        if any(_sent_by_name(s) for s in suspects):
            error.args = (f"{error.args[0] if error.args else error}; {INSTALL_HINT}",)
        raise error from error.__cause__
    try:
        return _cloudpickle_dumps(cloudpickle, obj)
    except Exception:
        raise error from error.__cause__  # the standard pickler's words name the culprit


_BY_NAME_TYPES = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    type,
)


def _sent_by_name(obj: Any) -> bool:
    """Functions and classes: what the standard pickler can send only by
    name (and cloudpickle by value). functools.partial and the like hold
    one: look one level in."""
    if isinstance(obj, _BY_NAME_TYPES):
        return True
    inner = getattr(obj, "func", None)  # functools.partial
    return isinstance(inner, _BY_NAME_TYPES)


def _cloudpickle_dumps(cloudpickle: Any, obj: Any) -> bytes:
    """cloudpickle with multiprocessing's reducers too (locks, queues, shared
    memory objects travel as with the stdlib's pickler)."""
    import collections
    import io

    buf = io.BytesIO()
    pickler = cloudpickle.CloudPickler(buf, protocol=_pickling.PROTOCOL)
    pickler.dispatch_table = collections.ChainMap(
        _pickling._Pickler.table(), pickler.dispatch_table
    )
    pickler.dump(obj)
    return buf.getvalue()


class _WholeObjects(Serializer):
    """A serializer that encodes each whole object with `encode` (no fast
    paths): the errors still name what could not be sent."""

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def _send(self, obj: Any, what: Callable[[], str]) -> bytes:
        try:
            return self.encode(obj)
        except Exception as e:
            raise _pickling._named(e, what()) from e

    def function(self, func: Any) -> bytes:
        return self._send(func, lambda: f"the function {_pickling._short(func)}")

    def call(self, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        return self._send((args, kwds), lambda: "the call's arguments")

    def chunk(self, chunk: Sequence[Any], first_index: int) -> Any:
        last = first_index + len(chunk) - 1
        return self._send(list(chunk), lambda: f"input items {first_index}..{last}")


class _Cloudpickle(_WholeObjects):
    def __init__(self) -> None:
        try:
            import cloudpickle
        except ImportError:
            raise ImportError(
                "serializer='cloudpickle' needs cloudpickle: pip install 'ferropool[cloudpickle]'"
            ) from None
        self._cloudpickle = cloudpickle

    def encode(self, obj: Any) -> bytes:
        return _cloudpickle_dumps(self._cloudpickle, obj)


class _Custom(_WholeObjects):
    """A user's object with `dumps` and `loads`."""

    def __init__(self, custom: Any) -> None:
        self._dumps = custom.dumps
        # A module travels by name (modules do not pickle); anything else
        # must pickle, and is checked now rather than in every worker.
        if isinstance(custom, types.ModuleType):
            self.for_workers = ("module", custom.__name__)
        else:
            try:
                _pickling.dumps(custom)
            except Exception as e:
                raise TypeError(f"serializer {custom!r} cannot be sent to the workers: {e}") from e
            self.for_workers = ("object", custom)

    def encode(self, obj: Any) -> bytes:
        data = self._dumps(obj)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"serializer.dumps returned {type(data).__name__}, not bytes")
        return bytes(data)


DEFAULT = _WithFallback()
_PICKLE = Serializer()


def serializer_from(serializer: Any) -> Serializer:
    """The `serializer=` argument, checked."""
    if serializer is None:
        return DEFAULT
    if isinstance(serializer, str):
        if serializer == "pickle":
            return _PICKLE
        if serializer == "cloudpickle":
            return _Cloudpickle()
        raise ValueError(
            f"serializer must be 'pickle', 'cloudpickle' or an object with dumps and loads, "
            f"not {serializer!r}"
        )
    if not (
        callable(getattr(serializer, "dumps", None))
        and callable(getattr(serializer, "loads", None))
    ):
        raise TypeError(
            f"serializer must be 'pickle', 'cloudpickle' or an object with dumps and loads, "
            f"not {serializer!r}"
        )
    return _Custom(serializer)


def loads_in_worker(for_workers: Any) -> Callable[[Any], Any]:
    """In a worker: the `loads` of a custom serializer (`for_workers`)."""
    kind, what = for_workers
    if kind == "module":
        import importlib

        what = importlib.import_module(what)
    loads: Callable[[Any], Any] = what.loads
    return loads
