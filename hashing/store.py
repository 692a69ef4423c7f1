"""Descriptor objects in the feature store: hash codes beside neural features, one layout.

``<root>/<dataset>/<method>.npy`` holds the rows (float32 features, or packed uint8 codes),
``<method>.records.csv`` who each row is, and ``<method>.json`` the sidecar, which says how to
compare the rows (``metric``, and ``n_bits`` for codes). Local descriptors (keypoint methods)
are stored as one row per image, their padded (descriptors x length) array flattened, with
the count of each image, the norm and the cutoff in the sidecar. `extractor.load_store` opens
the same files; `load_descriptors` gives them back as the object `hashing.describe` made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_retrieval import ImageRecord
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes


def save_descriptors(descriptors: BinaryCodes | FloatFeatures | LocalDescriptors, dataset: str,
                     root: str | Path | None = None, overwrite: bool = False,
                     meta: dict[str, Any] | None = None) -> Path:
    """Store descriptors made by `hashing.describe` as ``<root>/<dataset>/<method>.npy``.

    Parameters
    ----------
    descriptors : BinaryCodes, FloatFeatures or LocalDescriptors
        With ``ids`` and ``method`` (as `describe` makes them).
    dataset : str
        The store folder (a plain name).
    root : str or Path, optional
        Default ``Results/features`` (``$RESULTS_DIR/features``).
    overwrite : bool
        Replace a finished store of the same method.
    meta : dict, optional
        Added to the sidecar (how the images were made: attacks, seed, command...).

    Returns
    -------
    Path
        The ``.npy`` written.

    Raises
    ------
    ValueError
        Descriptors without ids or method.
    TypeError
        Multi-codes (several codes per image) are not stored yet.
    """
    from extractor.store import save_store

    if not isinstance(descriptors, BinaryCodes | FloatFeatures | MultiCodes | LocalDescriptors):
        raise TypeError(f"save_descriptors takes what hashing.describe returns, got a "
                        f"{type(descriptors).__name__}")
    if isinstance(descriptors, MultiCodes):
        raise TypeError("multi-codes (crop_resistant) cannot be stored yet: describe them "
                        "again, or store a single-code method")
    if descriptors.ids is None or not descriptors.method:
        raise ValueError("descriptors need ids and a method to be stored: make them with "
                         "hashing.describe, or .with_identity(ids=..., method=...)")
    records = list(descriptors.records or (ImageRecord(i, None) for i in descriptors.ids))
    if isinstance(descriptors, BinaryCodes):
        array, kind = descriptors.packed, {"kind": "binary", "metric": "hamming",
                                           "n_bits": descriptors.n_bits}
    elif isinstance(descriptors, LocalDescriptors):
        n, width, length = descriptors.values.shape
        array = descriptors.values.reshape(n, width * length)
        kind = {"kind": "local", "metric": descriptors.metric, "norm": descriptors.norm,
                "cutoff": int(descriptors.cutoff), "descriptors": int(width),
                "length": int(length), "counts": descriptors.counts.tolist()}
    else:
        array, kind = descriptors.values.astype("float32", copy=False), {
            "kind": "float", "metric": descriptors.metric}
    return save_store(array, records, dataset, descriptors.method, root,
                      {**(meta or {}), **kind}, overwrite)


def load_descriptors(dataset: str, method: str, root: str | Path | None = None,
                     mmap: bool = True, metric: str | None = None) -> Any:
    """A stored method's rows as a descriptor object, with ids, records and method.

    Parameters
    ----------
    dataset, method : str
        The store folder and the method: its identity (``efficientnet_lite0``,
        ``phash_hash_size=16``) or the spec `describe` took (``phash:hash_size=16``).
    mmap : bool
        Map the rows instead of reading them (stores larger than memory).
    metric : str, optional
        For float features: the distance to compare them with, when the store does not say
        (stores written by extraction; default ``cosine``).

    Raises
    ------
    FileNotFoundError
        No finished store (the message lists the stores of that folder).
    ValueError
        ``metric`` differs from the one the store records.
    """
    from extractor.store import load_store, store_paths
    from hashing.methods.describe import parse_algorithm

    if ":" in method:  # a spec, as describe takes it: its identity names the store
        method = parse_algorithm(method).label
    try:
        store = load_store(dataset, method, root, mmap=mmap)
    except FileNotFoundError as exc:
        folder = store_paths(dataset, method, root)[0].parent
        there = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise FileNotFoundError(f"{exc}; stores in {folder}: {', '.join(there) or 'none'}"
                                ) from None
    recorded = store.meta.get("metric")
    if metric and recorded and metric != recorded:
        raise ValueError(f"store {method} records metric {recorded!r}, not {metric!r}")
    identity = {"ids": tuple(store.ids), "records": tuple(store.records), "method": method}
    if store.meta.get("kind") == "binary":
        return BinaryCodes(store.features, int(store.meta["n_bits"]), **identity)
    if store.meta.get("kind") == "local":
        meta = store.meta
        values = store.features.reshape(len(store.features), int(meta["descriptors"]),
                                        int(meta["length"]))
        return LocalDescriptors(values, meta["counts"], meta["norm"], int(meta["cutoff"]),
                                **identity)
    return FloatFeatures(store.features, recorded or metric or "cosine", **identity)
