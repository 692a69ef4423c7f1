"""What clustering works on: the rows of one method in memory, their metric, and who they are.

`as_points` takes what the rest of the library makes (descriptor objects, feature stores,
store specs ``dataset/method``, ``.npy`` paths) or a plain array with a metric, and gives
`Points`. Binary codes stay packed (Hamming as a bit error rate over the true bit count); float
features keep the metric they were stored with unless another one is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from fast_search import open_described
from helpers.descriptors import (
    FLOAT_METRICS,
    BinaryCodes,
    FloatFeatures,
    LocalDescriptors,
    MultiCodes,
)

#: Metrics float features can be clustered with (those of `hashing.distances`).


@dataclass
class Points:
    """Rows to cluster.

    Attributes
    ----------
    values : numpy.ndarray
        (N, dim) float32 features, or (N, bytes) packed uint8 codes.
    metric : str
        ``hamming`` for codes; one of `FLOAT_METRICS` for features.
    n_bits : int or None
        True bits per code.
    ids : list of str
    records : tuple of ImageRecord, or None
    method : str or None
        The method that made the rows.
    made : dict or None
        How the store's attacked images were made on the fly, from its metadata: ``seed``,
        ``options`` (font, background; ``None`` when the store did not record them) and
        ``sources_are_originals`` (``None`` when unknown). Galleries make them again from
        their sources.
    """

    values: np.ndarray
    metric: str
    n_bits: int | None
    ids: list[str]
    records: tuple | None = None
    method: str | None = None
    made: dict | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def binary(self) -> bool:
        return self.metric == "hamming"

    def descriptors(self, rows: Any = slice(None)) -> BinaryCodes | FloatFeatures:
        """Some rows as the descriptor object `hashing.distances` takes."""
        if self.binary:
            return BinaryCodes(self.values[rows], int(self.n_bits))
        return FloatFeatures(self.values[rows], self.metric)

    def take(self, rows: Any) -> Points:
        """The rows at ``rows`` (indices in order, or a slice), ids and records kept."""
        index = np.arange(len(self))[rows]
        records = (tuple(self.records[i] for i in index) if self.records is not None
                   else None)
        return Points(np.ascontiguousarray(self.values[index]), self.metric, self.n_bits,
                      [self.ids[i] for i in index], records, self.method, self.made)

    def inverse_norms(self) -> np.ndarray:
        """(N,) float64 ``1 / |row|`` of float features, computed once for these values and
        kept."""
        key, cached = self.__dict__.get("_inverse_norms", (None, None))
        if key is not self.values:
            norms = np.sqrt(np.einsum("ij,ij->i", self.values, self.values,
                                      dtype=np.float64))
            with np.errstate(divide="ignore"):
                cached = 1.0 / norms
            self.__dict__["_inverse_norms"] = (self.values, cached)
        return cached

    def bits(self) -> np.ndarray:
        """Codes unpacked to (N, n_bits) uint8 zeros and ones (only the true bits)."""
        if not self.binary:
            raise ValueError("bits() is for binary codes")
        return np.unpackbits(self.values, axis=1, count=int(self.n_bits))


def as_points(features: Any, metric: str | None = None,
              root: str | os.PathLike | None = None, n_bits: int | None = None,
              min_rows: int = 2) -> Points:
    """Rows to cluster, read into memory.

    Parameters
    ----------
    features : BinaryCodes, FloatFeatures, FeatureStore, str, path or numpy.ndarray
        A descriptor object, a feature store, a store spec (``dataset/method``, under
        ``root``), a store's ``.npy`` path, or an array (float rows, or packed ``uint8`` codes
        with ``metric="hamming"``).
    metric : str, optional
        The distance to cluster with. Codes take only ``hamming``; float features any of
        `FLOAT_METRICS` (default: the one they carry; required for a float array).
    root : path, optional
        Feature store root for a store spec.
    n_bits : int, optional
        True code length of a packed array (default: 8 x its width).
    min_rows : int
        Fewest rows accepted (2 to cluster; 1 for one part of several, `concat_points`
        checks the whole).

    Raises
    ------
    ValueError, TypeError
        An empty input, a single row, NaN or infinite values (naming the row), repeated ids,
        an unknown metric, or a metric the rows cannot take.
    """
    if isinstance(features, MultiCodes | LocalDescriptors):
        raise TypeError(f"{features.method or 'these descriptors'}: several descriptors per "
                        "image (crop_resistant, keypoint methods) have no single row to "
                        "cluster; use a method with one descriptor per image")
    made = None
    if isinstance(features, np.ndarray):
        features = _from_array(features, metric, n_bits)
    elif not isinstance(features, BinaryCodes | FloatFeatures):
        features, meta = open_described(features, root, "features")
        made = made_from(meta)
    if isinstance(features, BinaryCodes):
        if metric not in (None, "hamming"):
            raise ValueError(f"binary codes ({features.method or 'codes'}) are compared with "
                             f"hamming only, not {metric!r}")
        values, use, bits = _code_rows(features), "hamming", features.n_bits
    else:
        use, bits = metric or features.metric, None
        values = _float_rows(features, use)
    n = len(values)
    if n < min_rows:
        raise ValueError(f"clustering needs at least {min_rows} rows, got {n}")
    ids = (list(features.ids) if features.ids is not None
           else [str(i) for i in range(n)])
    if len(set(ids)) != n:
        seen: set[str] = set()
        repeated = next(i for i in ids if i in seen or seen.add(i))
        raise ValueError(f"image id {repeated!r} appears twice; ids must be unique")
    return Points(np.asarray(values), use, bits, ids, features.records, features.method, made)


def _code_rows(codes: BinaryCodes) -> np.ndarray:
    """Packed codes, C-contiguous, with their padding bits cleared."""
    values, bits = np.ascontiguousarray(codes.packed), codes.n_bits
    spare = 8 * values.shape[1] - bits
    if spare and (values[:, -1] & np.uint8((1 << spare) - 1)).any():
        # every distance of the library ignores padding bits: clear them so Faiss's and
        # the unpacked bits' distances agree with hashing.distances
        values = values.copy()
        values[:, -1] &= np.uint8((0xFF << spare) & 0xFF)
    return values


def _float_rows(features: FloatFeatures, use: str) -> np.ndarray:
    """The features as float32 rows, refused when ``use`` is not a float metric or the rows
    cannot take it (NaN or infinite values; negative values or all-zero rows where the
    metric is undefined for them)."""
    if use not in FLOAT_METRICS:
        raise ValueError(f"unknown metric {use!r} for float features; choose one of "
                         f"{', '.join(FLOAT_METRICS)}")
    values = np.ascontiguousarray(features.values, dtype=np.float32)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        name = features.ids[row] if features.ids is not None else f"row {row}"
        raise ValueError(f"features of {name} hold NaN or infinite values "
                         f"({int(bad.sum())} such rows)")
    if use == "jensenshannon" and (values < 0).any():
        raise ValueError("jensenshannon needs non-negative features (distributions)")
    if use in ("cosine", "jensenshannon"):
        empty = ~values.any(axis=1)
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            name = features.ids[row] if features.ids is not None else f"row {row}"
            raise ValueError(f"features of {name} are all zero: {use} distances to it are "
                             f"undefined ({int(empty.sum())} such rows)")
    return values


def made_from(meta: dict) -> dict | None:
    """How a store's images were made on the fly (``search_stores.py`` writes it under
    ``copies`` or ``protocol``), or ``None``: the seed, the attack options (``None`` when not
    recorded: stores written before they were, whose options are unknown) and whether every
    source was an original (``None`` when not recorded)."""
    for key in ("copies", "protocol"):
        entry = meta.get(key)
        if isinstance(entry, dict) and "seed" in entry:
            options = entry.get("options")
            return {"seed": int(entry["seed"]),
                    "options": dict(options) if isinstance(options, dict) else None,
                    "sources_are_originals": entry.get("sources_are_originals")}
    return None


def _from_array(array: np.ndarray, metric: str | None, n_bits: int | None
                ) -> BinaryCodes | FloatFeatures:
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d array of rows, got shape {array.shape}")
    if metric == "hamming":
        if array.dtype != np.uint8:
            raise ValueError("hamming needs packed uint8 codes (np.packbits)")
        return BinaryCodes(array, 8 * array.shape[1] if n_bits is None else n_bits)
    if metric is None:
        raise ValueError("a plain array needs a metric: "
                         f"{', '.join(FLOAT_METRICS)} or hamming (packed uint8 codes)")
    if not np.issubdtype(array.dtype, np.number) or array.dtype == np.uint8:
        raise ValueError(f"float features expected, got dtype {array.dtype}")
    return FloatFeatures(np.asarray(array, dtype=np.float32), metric)


def concat_points(parts: list[Points]) -> Points:
    """Rows of several inputs of one method, in order (an originals store and a copies
    store...).

    Raises
    ------
    ValueError
        Parts of different methods, metrics, widths or bit counts, or a repeated id.
    """
    if len(parts) == 1 and len(parts[0]) >= 2:
        return parts[0]
    if sum(len(p) for p in parts) < 2:
        raise ValueError(f"clustering needs at least 2 rows, the inputs hold "
                         f"{sum(len(p) for p in parts)}")
    first = parts[0]
    for p in parts[1:]:
        if (p.method, p.metric, p.n_bits, p.values.shape[1]) != \
                (first.method, first.metric, first.n_bits, first.values.shape[1]):
            raise ValueError(
                f"cannot cluster {first.method} ({first.metric}, {first.values.shape[1]} "
                f"values) with {p.method} ({p.metric}, {p.values.shape[1]} values) together")
    ids = [i for p in parts for i in p.ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = next(i for i in ids if i in seen or seen.add(i))
        raise ValueError(f"image id {repeated!r} is in two of the inputs")
    records = (tuple(r for p in parts for r in p.records)
               if all(p.records is not None for p in parts) else None)
    made = {repr(p.made): p.made for p in parts if p.made is not None}
    return Points(np.concatenate([p.values for p in parts]), first.metric, first.n_bits, ids,
                  records, first.method, next(iter(made.values())) if len(made) == 1 else None)
