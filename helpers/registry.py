"""One registry pattern for every kind of named thing: datasets, attacks, algorithms, models,
reducers, cluster methods, losses and optimisers.

A :class:`Registry` maps a name to an entry (a function, a class or a small record). Entries are
added with the ``register`` decorator (or ``add`` for entries that are not functions), found with
``get`` and listed with ``list``; an unknown name always raises the same ``ValueError``, naming
what was asked, the closest known name and all of them (as timm's model registry does). What a
package *does* with an entry (build a model, run an attack) stays in that package, so that
``get`` returns the same kind of thing everywhere: the registered entry.

Example
-------
>>> LOSSES: Registry[Callable[..., Loss]] = Registry("loss")
>>> @LOSSES.register("ntxent")
... def ntxent(temperature: float = 0.1) -> Loss: ...
>>> LOSSES.get("ntxent")(temperature=0.2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from helpers.params import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, with one error for unknown names.

    Parameters
    ----------
    kind : str
        What the entries are, as the error names them (``"model"``, ``"attack family"``).

    Families of names that cannot be listed one by one (every ``simclr_*`` checkpoint, every
    ``folder:<path>``) join through :meth:`add_finder`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._finders: list[tuple[Callable[[str], T | None], Callable[[], list[str]]]] = []

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object under ``name``
        and returns it unchanged."""

        def decorate(entry: T) -> T:
            self.add(name, entry, replace=replace)
            return entry

        return decorate

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name``; a name already taken is refused unless ``replace``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, not {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def add_finder(self, find: Callable[[str], T | None], names: Callable[[], list[str]]) -> None:
        """Extend the registry with a family of names: ``find(name)`` returns the entry for a
        name of the family or ``None``, ``names()`` lists the family's names for messages."""
        self._finders.append((find, names))

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises
        ------
        ValueError
            ``name`` is not registered: the message names the closest known name.
        """
        if isinstance(name, str):
            if name in self._entries:
                return self._entries[name]
            for find, _ in self._finders:
                entry = find(name)
                if entry is not None:
                    return entry
        raise ValueError(unknown_name(self.kind, name, self.names()))

    def names(self) -> list[str]:
        """Every known name, sorted (finders' families included)."""
        names = set(self._entries)
        for _, listed in self._finders:
            names.update(listed())
        return sorted(names)

    def list(self, filter: Callable[[str, T], bool] | None = None) -> list[str]:  # noqa: A002
        """Registered names, sorted; with ``filter(name, entry)`` only those it accepts."""
        if filter is None:
            return self.names()
        return sorted(name for name, entry in self.items() if filter(name, entry))

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) for the entries registered by name (finders' families excluded)."""
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._entries:
            return True
        return any(find(name) is not None for find, _ in self._finders)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
