"""Algorithms by name: ``get_algorithm("phash", hash_size=16)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

_ALGORITHMS: dict[str, Callable[..., Any]] = {}


def register_algorithm(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``f(batch, **params) -> descriptors`` under ``name``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ALGORITHMS:
            raise ValueError(f"algorithm {name!r} is already registered")
        _ALGORITHMS[name] = func
        return func

    return decorate


def list_algorithms() -> list[str]:
    """Registered algorithm names."""
    return sorted(_ALGORITHMS)


@dataclass(frozen=True)
class Algorithm:
    """A named algorithm with its parameters; ``describe(images)`` gives descriptors."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def describe(self, images: Sequence[Image.Image] | Any) -> Any:
        """Descriptors of a list of PIL images (or of a prepared ``GrayBatch``)."""
        from hashing.classical import GrayBatch

        batch = images if isinstance(images, GrayBatch) else GrayBatch(images)
        return _ALGORITHMS[self.name](batch, **dict(self.params))


def get_algorithm(name: str, **params: Any) -> Algorithm:
    """An algorithm by name, its parameters checked against the function's signature.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or parameter.
    """
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; algorithms: {', '.join(list_algorithms())}")
    accepted = list(inspect.signature(_ALGORITHMS[name]).parameters)[1:]
    unknown = set(params) - set(accepted)
    if unknown:
        raise ValueError(f"algorithm {name!r} has no parameter(s) {sorted(unknown)}; "
                         f"parameters: {', '.join(accepted)}")
    return Algorithm(name, tuple(sorted(params.items())))
