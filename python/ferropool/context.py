"""Contexts: ``ferropool.get_context(method)`` returns an object that behaves
like the stdlib's context for that start method, except that its ``Pool`` is
ferropool's. Everything else (Lock, Queue, Process, Value, ...) is the
stdlib's own, from the same context, so objects made from it fit together."""

from __future__ import annotations

import multiprocessing

# `typing` only for the type checker (start-up time of a short script).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

    from .pool import Pool

__all__ = ["FerroContext", "get_context"]


class FerroContext:
    def __init__(self, base: Any) -> None:
        self._base = base

    def Pool(  # noqa: N802
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: Optional[int] = None,
        **options: Any,
    ) -> Pool:
        from .pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self, **options)

    def get_context(self, method: Optional[str] = None) -> FerroContext:
        return get_context(method)

    def get_start_method(self, allow_none: bool = False) -> Optional[str]:
        method: Optional[str] = self._base.get_start_method(allow_none)
        return method

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __repr__(self) -> str:
        return f"<ferropool context {self.get_start_method(allow_none=True)!r}>"


def get_context(method: Optional[str] = None) -> FerroContext:
    """Like ``multiprocessing.get_context``, with ferropool's Pool."""
    return FerroContext(multiprocessing.get_context(method))
