"""Named extension points, filled by our own modules and by installed packages' entry points.

    BACKENDS = Registry("corral.backends")        # a group of entry points
    BACKENDS.register("local", LocalBackendPlugin)  # what we ship, one line each
    BACKENDS.get("docker")                         # ours, or an installed package's, loaded on first use

A third party adds a backend, a handler, a gate or an in-sandbox plugin by installing a package
that declares an entry point in the group; nothing of corral's changes.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """No such name in a registry; carries what is known, for the error message."""

    def __init__(self, group: str, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.group = group
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"no {self.group} named {self.name!r} (known: {', '.join(self.known) or 'none'})"


class Registry(Generic[T]):
    def __init__(self, group: str) -> None:
        self.group = group
        self._items: dict[str, T] = {}
        self._lazy: dict[str, Callable[[], T]] = {}
        self._scanned = False

    def register(self, name: str, item: T) -> T:
        self._items[name] = item
        return item

    def register_lazy(self, name: str, load: Callable[[], T]) -> None:
        """Register what is imported only when first asked for (a heavy dependency)."""
        self._lazy[name] = load

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            return self.register(name, self._lazy.pop(name)())
        self._scan()
        if name in self._lazy:
            return self.register(name, self._lazy.pop(name)())
        raise UnknownName(self.group, name, self.names())

    def names(self) -> list[str]:
        self._scan()
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def _scan(self) -> None:
        """Installed packages' entry points; ours registered in code win over a clash."""
        if self._scanned:
            return
        self._scanned = True
        for point in entry_points(group=self.group):
            if point.name not in self._items and point.name not in self._lazy:
                self._lazy[point.name] = point.load
