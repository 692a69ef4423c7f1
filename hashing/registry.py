"""Algorithms by name: ``get_algorithm("phash", hash_size=16)``."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from hashing.gray import GrayBatch
from helpers import check_param_type, method_label, parse_key_values, unknown_name

_ALGORITHMS: dict[str, Callable[..., Any]] = {}
_WHOLE_BATCH: set[str] = set()
_NORMALISERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
#: Sources of algorithms registered on first request: ``(find(name) -> bool, names())``.
#: The neural methods come from the extractor's model registry this way, so that importing
#: `hashing` neither imports torch nor builds the model list, and a model registered at any
#: time is an algorithm.
_PROVIDERS: list[tuple[Callable[[str], bool], Callable[[], list[str]]]] = []


def register_algorithm(name: str, whole_batch: bool = False
                       ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``f(batch, **params) -> descriptors`` under ``name``.

    ``batch`` is a `GrayBatch` (decoded images with shared gray resizes), or, with
    ``whole_batch=True``, the list of PIL images itself: such algorithms (neural networks)
    run once on a whole batch in the calling thread instead of on per-thread slices.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in _ALGORITHMS:
            raise ValueError(f"algorithm {name!r} is already registered")
        _ALGORITHMS[name] = func
        if whole_batch:
            _WHOLE_BATCH.add(name)
        return func

    return decorate


def register_normaliser(name: str, normalise: Callable[[dict[str, Any]], dict[str, Any]]
                        ) -> None:
    """``normalise(params) -> params`` runs in `get_algorithm` after the checks, before the
    label is made: the models resolve ``reduce="pca:128"`` to the reducer file it names."""
    _NORMALISERS[name] = normalise


def register_provider(find: Callable[[str], bool], names: Callable[[], list[str]]) -> None:
    """Add a source of algorithms: ``find(name)`` registers ``name`` (and says so) when it
    knows it; ``names()`` lists what it knows. Asked only when a name is not registered yet."""
    _PROVIDERS.append((find, names))


def _lookup(name: str) -> bool:
    if name in _ALGORITHMS:
        return True
    return any(find(name) for find, _ in _PROVIDERS)


def list_algorithms() -> list[str]:
    """Every algorithm name: the registered ones and those of the providers (the models)."""
    names = set(_ALGORITHMS)
    for _, provided in _PROVIDERS:
        names.update(provided())
    return sorted(names)


@dataclass(frozen=True)
class Algorithm:
    """A named algorithm with its parameters; ``describe(images)`` gives descriptors."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """The name with its non-default parameters, e.g. ``phash`` or ``phash_hash_size=16``:
        how results name this algorithm."""
        return method_label(self.name, dict(self.params))

    @property
    def whole_batch(self) -> bool:
        """Runs on whole batches of PIL images (neural), not on per-thread `GrayBatch` slices."""
        return self.name in _WHOLE_BATCH

    def describe(self, images: Sequence[Image.Image] | Any) -> Any:
        """Descriptors of a list of PIL images (or of a prepared ``GrayBatch``): the building
        block, no ids attached. Anything else `hashing.describe` takes (paths, records, a
        dataset, a manifest...) goes through `hashing.describe` and gets its ids."""
        if not isinstance(images, GrayBatch) and not (
                isinstance(images, list | tuple)
                and all(isinstance(im, Image.Image) for im in images)):
            from hashing.describe import describe

            return describe(images, self)
        if self.whole_batch:
            batch = images.images if isinstance(images, GrayBatch) else list(images)
        else:
            batch = images if isinstance(images, GrayBatch) else GrayBatch(images)
        out = _ALGORITHMS[self.name](batch, **dict(self.params))
        return out.with_identity(method=self.label) if hasattr(out, "with_identity") else out


def get_algorithm(name: str, **params: Any) -> Algorithm:
    """An algorithm by name, its parameters checked against the function's signature.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or parameter.
    """
    if not _lookup(name):
        raise ValueError(unknown_name("algorithm", name, list_algorithms()))
    accepted = list(inspect.signature(_ALGORITHMS[name]).parameters)[1:]
    unknown = set(params) - set(accepted)
    if unknown:
        raise ValueError(f"algorithm {name!r} has no parameter(s) {sorted(unknown)}; "
                         f"parameters: {', '.join(accepted)}")
    signature = inspect.signature(_ALGORITHMS[name]).parameters
    for key, value in params.items():
        check_param_type(f"algorithm {name!r}", key, value, signature[key].default)
    if name in _NORMALISERS:
        params = _NORMALISERS[name](dict(params))
    explicit = {k: v for k, v in params.items() if signature[k].default != v}
    return Algorithm(name, tuple(sorted(explicit.items())))


def parse_algorithm(spec: str | Algorithm) -> Algorithm:
    """An algorithm from a spec string: ``name`` or ``name:key=value,key=value`` (values as
    Python literals: ``phash:hash_size=16``, ``efficientnet_lite0:distance='l2'``), as scripts,
    config files and notebooks write it. An `Algorithm` is returned as it is.

    Raises
    ------
    ValueError
        Unknown name or parameter, a value of the wrong type, or an item without ``=``.
    """
    if isinstance(spec, Algorithm):
        return spec
    name, _, rest = str(spec).partition(":")
    params = parse_key_values(filter(None, rest.split(",")), f"algorithm parameter in {spec!r}:")
    return get_algorithm(name.strip(), **params)


def concat_descriptors(parts: Sequence[Any]) -> Any:
    """Descriptors of consecutive batches joined in order (codes, multi-codes or arrays)."""
    if not len(parts):
        raise ValueError("no descriptors to join (an empty list of batches)")
    first = parts[0]
    if hasattr(first, "concat"):
        return type(first).concat(list(parts))
    import numpy as np

    return np.concatenate(parts)


def describe_many(
    algorithms: Sequence[Algorithm],
    images: Sequence[Image.Image],
    workers: int | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Descriptors of every algorithm for the same images, sharing decode and resizes.

    Parameters
    ----------
    algorithms : sequence of Algorithm
    images : sequence of PIL.Image.Image
    workers : int, optional
        Threads, each on a contiguous slice of the images (Pillow, NumPy and OpenCV release
        the GIL in their loops). Default: the usable cores.
    seconds : dict, optional
        Adds each algorithm's time to ``seconds[label]``, summed over threads. The gray
        conversion is shared out evenly; a shared resize is charged to the first algorithm
        that needs it.

    Returns
    -------
    dict
        ``{algorithm label: descriptors}`` (see `Algorithm.label`), in image order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from helpers import available_cpus

    images = list(images)
    whole = [a for a in algorithms if a.whole_batch]
    sliced = [a for a in algorithms if not a.whole_batch]
    result: dict[str, Any] = {}
    for a in whole:  # neural networks: one call on the whole batch (they use every core)
        tic = time.perf_counter()
        result[a.label] = a.describe(images)
        if seconds is not None:
            seconds[a.label] = seconds.get(a.label, 0.0) + time.perf_counter() - tic
    if not sliced:
        return result
    workers = max(1, min(workers or available_cpus(), len(images) or 1))
    bounds = [len(images) * k // workers for k in range(workers + 1)]

    def run(k: int) -> tuple[dict[str, Any], dict[str, float]]:
        out, spent = {}, {}
        tic = time.perf_counter()
        batch = GrayBatch(images[bounds[k]:bounds[k + 1]])
        shared = time.perf_counter() - tic
        for a in sliced:
            tic = time.perf_counter()
            out[a.label] = a.describe(batch)
            spent[a.label] = time.perf_counter() - tic + shared / len(sliced)
        return out, spent

    if workers == 1:
        parts = [run(0)]
    else:
        # Each thread's small matrix products get one BLAS thread: nested BLAS threads would
        # oversubscribe the cores (the exact resizes slowed down with 2 workers without this).
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, range(workers)))
    if seconds is not None:
        for _, spent in parts:
            for label, value in spent.items():
                seconds[label] = seconds.get(label, 0.0) + value
    outputs = [out for out, _ in parts]
    if len(outputs) == 1:
        result.update(outputs[0])
    else:
        result.update({a.label: concat_descriptors([o[a.label] for o in outputs])
                       for a in sliced})
    return {a.label: result[a.label] for a in algorithms}
