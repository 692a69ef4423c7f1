"""Neural methods in the benchmark: every `extractor` model is an algorithm.

``get_algorithm("efficientnet_lite0", distance="jensenshannon")`` compares raw features with a
distance of `hashing.distances`; ``bits=256`` turns them into SimHash codes (signs of
projections on seeded Gaussian random hyperplanes) compared by bit error rate; ``reduce``
applies a fitted reducer first (``reduce="pca:128"`` or a reducer file, see
`extractor.reduce`). The network is built once per (model, weights, device) and reused by every
batch.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

from hashing.methods.registry import register_algorithm, register_normaliser, register_provider
from helpers import resolve_device
from helpers.descriptors import FLOAT_METRICS, BinaryCodes, FloatFeatures

FEATURE_DISTANCES = FLOAT_METRICS  # the distances raw features are compared with
#: Most SimHash bits (the hyperplanes are a dim x bits float32 matrix).
MAX_SIMHASH_BITS = 8192

#: Networks kept built (per model, weights, device and parameters), least recently used
#: dropped first; `clear_model_caches` frees them all (GPU memory in a notebook).
CACHED_MODELS = 4
#: Reducers kept read (per file version).
CACHED_REDUCERS = 8


class _LRU:
    """A dict bounded to ``size`` entries, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> Any:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self.entries.clear()


_MODELS = _LRU(CACHED_MODELS)
_LOCK = threading.Lock()
# The last features of each model, so that several algorithms on one model (raw features with
# two distances, SimHash bits) run the network once per batch.
# The images are held, not their ids: a freed image's id could be reused by the next batch.
_LAST = _LRU(CACHED_MODELS)
_REDUCERS = _LRU(CACHED_REDUCERS)


def clear_model_caches() -> None:
    """Forget the networks, reducers and last features kept by the neural methods (and free
    CUDA's cached memory when torch is loaded): the next batch builds what it needs again."""
    with _LOCK:
        _MODELS.clear()
        _LAST.clear()
        _REDUCERS.clear()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def loaded_model(name: str, weights: str | None = None, device: str = "auto",
                 **params: Any):
    """The extractor model ``name`` with ``params``, built on first use and kept (the
    `CACHED_MODELS` most recently used; `clear_model_caches` frees them)."""
    from extractor import get_model  # imports torch: only when a network is wanted

    key = (name, weights, resolve_device(device), tuple(sorted(params.items())))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS.put(key, get_model(name, weights=weights, device=key[2], **params))
        return model


JS_REDUCE_ERROR = ("reduced features can be negative, and Jensen-Shannon compares "
                   "distributions: compare them with distance 'cosine', 'l2' or 'l1'")


def loaded_reducer(reduce: str, method: str):
    """The reducer ``reduce`` (a file, or a name resolved under ``Results/reducers/<method>/``)
    for features of ``method``, read once per file version and checked against the method."""
    from extractor.reduce import load_reducer, resolve_reducer  # torch: only when wanted

    path = resolve_reducer(reduce, method)
    stat = path.stat()
    key = (str(path.resolve()), f"{stat.st_size}-{stat.st_mtime_ns}")
    with _LOCK:
        reducer = _REDUCERS.get(key)
        if reducer is None:
            reducer = _REDUCERS.put(key, load_reducer(path))
    if reducer.method is not None and reducer.method != method:
        raise ValueError(f"reducer {path} was fitted on {reducer.method} features, not "
                         f"{method}")
    return reducer


def model_label(name: str, params: dict[str, Any]) -> str:
    """The name of the model an algorithm runs (what its feature store and its reducers are
    named by): `extractor.model_name` of its model parameters and weights file, without the
    algorithm's own (``distance``, ``bits``, ``seed``, ``batch_size``, ``device``, ``reduce``)."""
    from extractor import model_name  # extractor: on use (no torch on import)

    return model_name(name, params, params.get("weights"))


def algorithm_model_label(algorithm: Any) -> str | None:
    """`model_label` of a neural `Algorithm`; None for other algorithms."""
    from extractor import list_models  # extractor: on use (no torch on import)

    if algorithm.name not in list_models():
        return None
    return model_label(algorithm.name, dict(algorithm.params))


def resolve_reduce_param(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``reduce="pca:128"`` of a model algorithm -> the reducer file it stands for (so that the
    algorithm's label names the file and its content), read and checked now against the model
    (its method and width) so that a wrong reducer fails before any image is described; other
    parameters unchanged.

    Raises
    ------
    ValueError
        Not a reducer, a reducer of another method or width, or with Jensen-Shannon.
    FileNotFoundError
        No such file, or no reducer of that name fitted for the model.
    """
    reduce = params.get("reduce")
    if reduce is None:
        return params
    if not isinstance(reduce, str | os.PathLike):
        raise ValueError(f"reduce must be a reducer file or name such as 'pca:128', got "
                         f"{reduce!r}")
    if params.get("distance") == "jensenshannon":
        raise ValueError(JS_REDUCE_ERROR)
    from extractor import model_spec  # extractor: on use (no torch on import)

    label = model_label(name, params)
    reducer = loaded_reducer(reduce, label)
    if reducer.input_dim != model_spec(name).dim:
        raise ValueError(f"reducer {reduce} takes {reducer.input_dim}-d features; {name} gives "
                         f"{model_spec(name).dim}-d")
    from extractor.reduce import resolve_reducer  # extractor: on use (no torch on import)

    return {**params, "reduce": str(resolve_reducer(reduce, label))}


def simhash_planes(dim: int, bits: int, seed: int) -> np.ndarray:
    """Gaussian random hyperplanes (dim, bits), float32, the same for the same seed."""
    return np.random.default_rng(seed).standard_normal((dim, bits)).astype(np.float32)


def simhash(features: np.ndarray, bits: int, seed: int = 0) -> BinaryCodes:
    """SimHash codes: bit j is set where ``features @ planes[:, j] > 0``."""
    planes = simhash_planes(features.shape[1], bits, seed)
    return BinaryCodes.from_bits(features @ planes > 0)


def _describer(model_name: str, model_params: dict[str, Any]):
    def describe(images: list[Image.Image], distance: str = "cosine", bits: int = 0,
                 seed: int = 0, batch_size: int = 32, device: str = "auto",
                 weights: str | None = None, reduce: str | None = None,
                 **params: Any) -> Any:
        if distance not in FEATURE_DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(FEATURE_DISTANCES)}, got "
                             f"{distance!r}")
        if not 0 <= bits <= MAX_SIMHASH_BITS:
            raise ValueError(f"bits must be in [0, {MAX_SIMHASH_BITS}] (0: raw features), "
                             f"got {bits}")
        if bits and distance != "cosine":
            raise ValueError(f"distance {distance!r} compares raw features; SimHash codes "
                             "(bits > 0) are compared by bit error rate: give one of the two")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if reduce is not None and distance == "jensenshannon":
            raise ValueError(JS_REDUCE_ERROR)
        model = loaded_model(model_name, weights, device, **params)
        key = (model.name, model.device, batch_size)
        last = _LAST.get(key)
        if last is not None and len(last[0]) == len(images) and all(
                a is b for a, b in zip(last[0], images, strict=True)):
            feats = last[1]
        else:
            parts = [model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
            feats = np.concatenate(parts) if parts else np.empty((0, model.dim), np.float32)
            _LAST.put(key, (list(images), feats))
        if reduce is not None:
            feats = loaded_reducer(reduce, model.name).transform(feats, method=model.name)
        if bits:
            return simhash(feats, bits, seed)
        return FloatFeatures(feats, distance)

    describe.__name__ = model_name
    describe.__doc__ = (f"{model_name} features (see `extractor.model_spec({model_name!r})`): "
                        "raw with ``distance``, or ``bits`` SimHash bits; the model's own "
                        "parameters (e.g. ``image_size``) pass through.")
    # The model's parameters are the algorithm's too: get_algorithm checks names against this.
    signature = inspect.signature(describe)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
             for k, v in model_params.items() if k not in signature.parameters]
    describe.__signature__ = signature.replace(parameters=fixed + extra)
    return describe


def _model_names() -> list[str]:
    from extractor import list_models  # the model zoo: only when a name is asked for

    return list_models()


def _find_model(name: str) -> bool:
    """Register the extractor model ``name`` as an algorithm, if there is one."""
    from extractor import model_spec  # the model zoo: only when a name is asked for

    if name not in _model_names():
        return False
    register_algorithm(name, whole_batch=True)(_describer(name, model_spec(name).params))
    register_normaliser(name, lambda params: resolve_reduce_param(name, params))
    return True


# Models become algorithms on first request (importing extractor, hence torch, only then).
register_provider(_find_model, _model_names)
