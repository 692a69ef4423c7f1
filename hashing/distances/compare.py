"""Distances between descriptors of any kind: every kind to its own matching rule.

Dense descriptors (`BinaryCodes`, `FloatFeatures`, arrays) are compared by a metric
(`hashing.distances.dense`); the kinds made of sets of codes per image bring their rule:
`MultiCodes` (crop-resistant hash) the best pair of segments (`hashing.distances.multi`),
`LocalDescriptors` (keypoint methods) the study's matching of descriptors
(`hashing.distances.local`). `MATCHING_RULES` is that table, the one place a kind meets its
rule: adding a kind of descriptor is one rule function and one entry, and no distance function
tests types. Everything is computed for whole batches: all queries of a batch against the
whole database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hashing.distances import dense
from hashing.distances.dense import DEFAULT_BLOCK_ELEMENTS
from hashing.distances.local import local_distances
from hashing.distances.multi import multi_distances
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

logger = logging.getLogger(__name__)

#: The matching rule of each kind of descriptor made of sets of codes per image:
#: ``rule(queries, database, device, max_block_elements) -> (Q, N) float32``.
MATCHING_RULES: dict[type, Callable[..., np.ndarray]] = {
    MultiCodes: multi_distances,
    LocalDescriptors: local_distances,
}


def _rule(queries: Any, database: Any) -> Callable[..., np.ndarray] | None:
    """The rule of the kind of either side (a mismatch is the rule's error to raise)."""
    return MATCHING_RULES.get(type(queries)) or MATCHING_RULES.get(type(database))


def pairwise(
    queries,
    database,
    metric: str | None = None,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> np.ndarray:
    """Distance matrix between every query and every database item.

    Parameters
    ----------
    queries : array-like (Q, D), BinaryCodes, FloatFeatures, MultiCodes or LocalDescriptors
        Float vectors, or packed ``uint8`` codes for ``hamming``; descriptor objects bring
        their own metric and bit count (multi-codes and local descriptors their matching
        rule).
    database : same kind as ``queries``, N items; or (dense kinds) an iterable of such blocks
        Read block by block: a memory-mapped store is never copied whole.
    metric : {"hamming", "cosine", "jensenshannon", "l1", "l2"}, optional
        See `hashing.distances.dense`; needed for arrays only.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    max_block_elements : int
        Bound on the values held by one intermediate array.
    n_bits : int, optional
        True length of packed ``hamming`` codes (default: 8 x the packed width).

    Returns
    -------
    numpy.ndarray, shape (Q, N), float32

    Raises
    ------
    ValueError
        Unknown metric, mismatched dimensions, wrong dtype, negative or zero-sum vectors for
        ``jensenshannon`` (the message gives the row).
    """
    rule = _rule(queries, database)
    if rule is not None:
        return rule(queries, database, device, max_block_elements)
    return dense.pairwise(queries, database, metric, device, max_block_elements, n_bits)


def nearest(
    queries,
    database,
    metric: str | None = None,
    k: int = 1,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database items of every query, blockwise over both sets.

    The database may be an array, a descriptor object, a memory-mapped store, or any
    iterable of blocks of them (faiss.contrib's exhaustive search over a stream): it is read
    block by block and only the running ``k`` best of each query are kept, so memory stays
    flat whatever its size.

    Parameters
    ----------
    queries, database, metric, device, max_block_elements, n_bits
        As in :func:`pairwise`. Multi-codes and local descriptors (sets of codes per image)
        are matched by their rule, a block of queries at a time.
    k : int
        Neighbours per query (at most the database size).

    Returns
    -------
    distances : numpy.ndarray, shape (Q, k), float32
        Ascending per row.
    indices : numpy.ndarray, shape (Q, k), int64
        Database rows (counted across blocks). Ties go to the lowest row.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rule = _rule(queries, database)
    if rule is None:
        return dense.nearest(queries, database, metric, k, device, max_block_elements, n_bits)
    if type(queries) is not type(database):
        raise TypeError(f"cannot compare {type(queries).__name__} with "
                        f"{type(database).__name__}")
    if k > len(database):
        raise ValueError(f"k must be in [1, {len(database)}] (the database size), got {k}")
    # the rule's distance rows, a block of queries at a time; ties go to the lowest row
    rows = max(1, max_block_elements // max(1, len(database)))
    best_d = np.empty((len(queries), k), dtype=np.float32)
    best_i = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), rows):
        span = slice(start, min(start + rows, len(queries)))
        matrix = rule(queries[span], database, device, max_block_elements)
        index = np.argsort(matrix, axis=1, kind="stable")[:, :k]
        best_i[span] = index
        best_d[span] = np.take_along_axis(matrix, index, axis=1)
    return best_d, best_i


def descriptor_distances(
    queries: Any, database: Any, metric: str | None = None, device: str = "auto"
) -> np.ndarray:
    """Distance matrix (Q, N) float32 between two sets of descriptors of the same kind.

    Parameters
    ----------
    queries, database : BinaryCodes, MultiCodes, FloatFeatures, LocalDescriptors or ndarray
    metric : str, optional
        For plain arrays of float features (``cosine``, ``jensenshannon``, ``l1``, ``l2``);
        codes and `FloatFeatures` know theirs.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """
    if type(queries) is not type(database):
        raise TypeError(f"cannot compare {type(queries).__name__} with "
                        f"{type(database).__name__}")
    if isinstance(queries, BinaryCodes | MultiCodes | FloatFeatures | LocalDescriptors):
        return pairwise(queries, database, device=device)
    if metric is None:
        raise ValueError("float features need a metric")
    return pairwise(queries, database, metric, device)


def neighbours(queries: Any, database: Any, k: int = 5, device: str = "auto") -> pd.DataFrame:
    """The ``k`` nearest database images of every query, by id: one row per (query, rank).

    Parameters
    ----------
    queries, database : BinaryCodes, MultiCodes, FloatFeatures or LocalDescriptors
        Descriptor objects of one method (as `hashing.describe` makes them); rows without ids
        are named by their position.
    k : int
        Neighbours per query (at most the database size).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_id``, ``rank`` (1 = nearest), ``neighbour_id``, ``distance``. An
        image at an infinite distance (a keypoint method's image without keypoints, or
        fewer than the cutoff) is nobody's neighbour: such a query has fewer than ``k`` rows
        or none (logged).
    """
    if not 1 <= k <= len(database):
        raise ValueError(f"k must be in [1, {len(database)}] (the database size), got {k}")
    dist, index = nearest(queries, database, k=k, device=device)
    q_ids = np.asarray(queries.ids if queries.ids is not None
                       else [str(i) for i in range(len(queries))], dtype=object)
    d_ids = np.asarray(database.ids if database.ids is not None
                       else [str(i) for i in range(len(database))], dtype=object)
    n_query, kk = index.shape
    finite = np.isfinite(dist)
    alone = q_ids[~finite.any(axis=1)]
    if len(alone):
        logger.warning("%d of %d queries have no neighbour at a finite distance (no keypoint, "
                       "or fewer than the cutoff): %s", len(alone), n_query,
                       ", ".join(map(str, alone[:5])) + (" ..." if len(alone) > 5 else ""))
    return pd.DataFrame({
        "query_id": np.repeat(q_ids, kk)[finite.ravel()],
        "rank": np.tile(np.arange(1, kk + 1), n_query)[finite.ravel()],
        "neighbour_id": d_ids[index[finite]],
        "distance": dist[finite],
    }).reset_index(drop=True)
