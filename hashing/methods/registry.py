"""The algorithm registry: every method of the library by name (hashes, keypoint methods,
neural models), each registered with one decorated function.

``register_algorithm("phash")`` adds ``f(batch, **params) -> descriptors``; the models of the
extractor join through `register_provider`, asked on first request. `hashing.methods.describing`
turns a name and parameters into an `Algorithm` and describes images with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpers import Registry


@dataclass(frozen=True)
class AlgorithmEntry:
    """A registered algorithm: its function, whether it takes whole batches of PIL images
    (neural networks) instead of per-thread `GrayBatch` slices, an optional
    ``normalise(params) -> params`` run after the parameter checks, and an optional
    ``draft(params) -> pixels``: the short side a JPEG may be decoded down to for it
    (``decode='draft'``, see `hashing.methods.describing.Algorithm.draft_side`), given every
    parameter of the function (defaults filled in); ``None``: no draft decode."""

    function: Callable[..., Any]
    whole_batch: bool = False
    normalise: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    draft: Callable[[dict[str, Any]], int] | None = None


#: Every algorithm by name. The neural methods come from the extractor's model registry
#: through `register_provider`, so that importing `hashing` neither imports torch nor builds
#: the model list, and a model registered at any time is an algorithm.
ALGORITHMS: Registry[AlgorithmEntry] = Registry("algorithm")


def register_algorithm(name: str, whole_batch: bool = False,
                       draft: Callable[[dict[str, Any]], int] | None = None
                       ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``f(batch, **params) -> descriptors`` under ``name``.

    ``batch`` is a `GrayBatch` (decoded images with shared gray resizes), or, with
    ``whole_batch=True``, the list of PIL images itself: such algorithms (neural networks)
    run once on a whole batch in the calling thread instead of on per-thread slices.
    ``draft(params) -> pixels`` offers the algorithm a draft decode (``decode='draft'``):
    the short side, from its parameters, that a JPEG keeps when decoded at reduced scale.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        ALGORITHMS.add(name, AlgorithmEntry(func, whole_batch, draft=draft))
        return func

    return decorate


def register_normaliser(name: str, normalise: Callable[[dict[str, Any]], dict[str, Any]]
                        ) -> None:
    """``normalise(params) -> params`` runs in `get_algorithm` after the checks, before the
    label is made: the models resolve ``reduce="pca:128"`` to the reducer file it names."""
    entry = ALGORITHMS.get(name)
    ALGORITHMS.add(name, dataclasses.replace(entry, normalise=normalise), replace=True)


def register_provider(find: Callable[[str], bool], names: Callable[[], list[str]]) -> None:
    """Add a source of algorithms: ``find(name)`` registers ``name`` (and says so) when it
    knows it; ``names()`` lists what it knows. Asked only when a name is not registered yet."""
    ALGORITHMS.add_finder(lambda name: ALGORITHMS.get(name) if find(name) else None, names)


def list_algorithms() -> list[str]:
    """Every algorithm name: the registered ones and those of the providers (the models)."""
    return ALGORITHMS.names()
