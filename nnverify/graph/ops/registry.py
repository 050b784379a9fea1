"""The dict behind ``REGISTRY`` and ``ACTIVATIONS``: importing ``nnverify.graph.ops`` loads the common operators'
modules only (start-up); a key it lacks, and any listing of it, loads every op module first (``ops.load_all``),
so a lookup never misses an operator that exists and a check of a ReLU network skips Conv, Resize, Sin ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class LazyRegistry(dict[K, V]):
    """A registry filled by the ``@register`` decorators of the op modules as they are imported."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()  # another thread waits until every module is loaded
        self._loading = False  # a lookup made while the modules load (same thread) does not load them again
        self._complete = False

    def complete(self) -> None:
        """Import every op module (once), so that the registry holds every operator."""
        if self._complete:
            return
        with self._lock:
            if self._complete or self._loading:
                return
            self._loading = True
            try:
                from nnverify.graph.ops import load_all

                load_all()
            finally:
                self._loading = False
            self._complete = True

    def add(self, key: K, value: V, what: str) -> None:
        """Register ``value`` under ``key``; a duplicate key fails (at import of the second module)."""
        if dict.__contains__(self, key):
            raise RuntimeError(f"{what} {key!r} registered twice ({type(dict.__getitem__(self, key)).__name__})")
        dict.__setitem__(self, key, value)

    def __missing__(self, key: K) -> V:
        self.complete()
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        self.complete()
        return dict.__contains__(self, key)

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V, /) -> V: ...
    @overload
    def get(self, key: K, default: T, /) -> V | T: ...
    def get(self, key: K, default: object = None, /) -> object:
        if not dict.__contains__(self, key):
            self.complete()
        return dict.get(self, key, default)

    def __iter__(self) -> Iterator[K]:
        self.complete()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.complete()
        return dict.__len__(self)

    def keys(self) -> dict_keys[K, V]:
        self.complete()
        return dict.keys(self)

    def values(self) -> dict_values[K, V]:
        self.complete()
        return dict.values(self)

    def items(self) -> dict_items[K, V]:
        self.complete()
        return dict.items(self)
